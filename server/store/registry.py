"""Units and their window terminals, as the site configuration files declare them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from agent.config import Site
from server.store.base import StoreBase
from server.store.schema import devices, units


class Registry(StoreBase):
    def register_site(self, site: Site) -> None:
        """Upsert a site's unit and windows from its configuration."""
        s = site.site
        self._tz.pop(s.site, None)
        unit = {
            "site": s.site,
            "name": s.name,
            "district": s.district,
            "unit_kind": s.unit_kind,
            "timezone": s.timezone,
        }
        with self.engine.begin() as conn:
            ins = self._insert(units).values(**unit)
            conn.execute(ins.on_conflict_do_update(index_elements=["site"], set_=unit))
            for w in site.windows:
                row = {"site": s.site, "window": w.window, "label": w.label, "role": w.role}
                ins = self._insert(devices).values(**row, online=False, max_seq=0)
                conn.execute(
                    ins.on_conflict_do_update(
                        index_elements=["site", "window"],
                        set_={"label": w.label, "role": w.role},
                    )
                )

    def known_devices(self) -> set[tuple[str, str]]:
        with self.engine.connect() as conn:
            return {
                (r.site, r.window) for r in conn.execute(select(devices.c.site, devices.c.window))
            }

    def windows(self, site: str | None = None) -> list[dict[str, Any]]:
        q = select(devices, units.c.name.label("site_name")).join(
            units, units.c.site == devices.c.site
        )
        if site:
            q = q.where(devices.c.site == site)
        q = q.order_by(devices.c.site, devices.c.window)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def terminals(self) -> list[dict[str, Any]]:
        """Every device's online flag and when it was last heard from (the clock's view;
        ``windows`` is the dashboard's, with its documents)."""
        d = devices
        q = select(d.c.site, d.c.window, d.c.online, d.c.last_seen_ms, d.c.availability_ms)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(q.order_by(d.c.site, d.c.window))]
