"""The in-process cache (L1): ``_local`` (the LRU of decoded entries, its load tokens) and
``_listener`` (what keeps it coherent with the backend's invalidation announcements).

Private: a manager builds its L1 from ``RedisConfig(l1_size=...)``.
"""
