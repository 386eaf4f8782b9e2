"""The call path: what runs when a decorated function is called.

Read in this order: ``_decorator`` (``cache_with_deps``, the wrappers) → ``_keys`` (the key
template) → ``_hit`` (serving a hit, on every path) → ``_flow`` (the cache flow, no I/O) →
``_drivers`` (the sync and async drivers that run it against a backend) → ``_flights`` (single
flight). ``_context`` holds the per-call frames (``add_dependency``...), ``_entry`` the stored
envelope, ``_spec`` what is known about a function at decoration time.

Every module here is private: the public names are exported by :mod:`depcache`.
"""
