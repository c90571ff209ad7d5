"""MockFactory scenario tests of the window's GPIO devices (agent/hardware)."""
