"""Alert and case policy, apart from storage: what events cause and what the clock causes.

``server.policy.events`` turns newly stored events into the measure rows, alerts and
bad-review cases to insert; ``server.policy.clock`` turns the time and the open cases
and terminals into the alerts that are due. Both are pure (time passed in, plain data in
and out); ``server.store`` only writes what they return and ``server.sweep`` runs the
clock's policy every minute.
"""
