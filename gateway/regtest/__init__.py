"""Real regtest Lightning network (btcd + two LND nodes) for tests, rehearsal and demos."""
