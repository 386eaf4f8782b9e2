"""Runnable examples of depcache and depcache_celery; each is run by tests/docs/test_examples.py."""
