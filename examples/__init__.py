"""Runnable examples of depcache and depcache_celery; each is run by tests/test_examples.py."""
