"""A Django process for tests/db/test_django.py: ``INSTALLED_APPS += ["depcache.db.django"]``
on PostgreSQL (or SQLite), cached reads of every kind through the ORM and raw SQL, writes of
every kind, each cached result checked against a fresh query; prints a JSON report.

Environment: DJANGO_CHECK_DB (``postgresql://...`` or a SQLite path), DJANGO_CHECK_SCHEMA,
DJANGO_CHECK_REDIS, DJANGO_CHECK_PREFIX.
"""

from __future__ import annotations

import collections
import json
import os
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import django
from django.conf import settings

DB = os.environ["DJANGO_CHECK_DB"]
if DB.startswith("postgresql://"):
    parts = urlsplit(DB)
    database: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/"),
        "USER": parts.username or "postgres",
        "HOST": parts.hostname,
        "PORT": str(parts.port or 5432),
        "OPTIONS": {"options": f"-csearch_path={os.environ['DJANGO_CHECK_SCHEMA']}"},
    }
else:
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": DB}

settings.configure(
    DATABASES={"default": database},
    INSTALLED_APPS=["tests.db.django_project.shop", "depcache.db.django"],
    DEPCACHE={
        "default": {
            "URL": os.environ["DJANGO_CHECK_REDIS"],
            "PREFIX": os.environ["DJANGO_CHECK_PREFIX"],
        }
    },
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.db import connection, transaction  # noqa: E402  # after setup
from django.db.models import Count, Q  # noqa: E402

from depcache import cache_with_deps  # noqa: E402
from tests.db.django_project.shop.models import Customer, Order  # noqa: E402

calls: collections.Counter[tuple[str, Any]] = collections.Counter()


def pk_get(cid: int) -> Any:
    found = Customer.objects.filter(pk=cid).first()
    return None if found is None else [found.name, found.org]


def by_org(org: int) -> Any:
    return sorted(Customer.objects.filter(org=org).values_list("name", flat=True))


def by_ids(ids: tuple[int, ...]) -> Any:
    return sorted(Customer.objects.filter(id__in=ids).values_list("name", flat=True))


def either(cid: int) -> Any:
    return sorted(Customer.objects.filter(Q(id=cid) | Q(org=2)).values_list("name", flat=True))


def score_above(floor: float) -> Any:
    return sorted(Customer.objects.filter(score__gt=floor).values_list("name", flat=True))


def name_like(start: str) -> Any:
    return sorted(Customer.objects.filter(name__startswith=start).values_list("name", flat=True))


def titles(cid: int) -> Any:
    return sorted(Order.objects.filter(customer__id=cid).values_list("title", flat=True))


def order_counts(org: int) -> Any:
    rows = Customer.objects.filter(org=org).annotate(n=Count("orders")).order_by("id")
    return [[c.name, c.n] for c in rows]


def raw_name(cid: int) -> Any:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM shop_customer WHERE id = %s", [cid])
        row = cursor.fetchone()
    return None if row is None else row[0]


QUERIES: dict[str, tuple[Callable[[Any], Any], list[Any]]] = {
    "pk_get": (pk_get, [1, 2, 3, 4]),
    "by_org": (by_org, [1, 2]),
    "by_ids": (by_ids, [(1, 2), (2, 3)]),
    "either": (either, [1]),
    "score_above": (score_above, [1.5]),
    "name_like": (name_like, ["a", "b"]),
    "titles": (titles, [1, 2]),
    "order_counts": (order_counts, [1]),
    "raw_name": (raw_name, [1, 2]),
}
CACHED: dict[str, Callable[[Any], Any]] = {}
for _name, (_query, _args) in QUERIES.items():

    def _body(arg: Any, _q: Any = _query, _n: str = _name) -> Any:
        calls[(_n, arg)] += 1
        return _q(arg)

    _body.__qualname__ = f"django_{_name}"
    CACHED[_name] = cache_with_deps()(_body)

checked = collections.Counter[str]()


def check(after: str) -> None:
    for name, (query, args) in QUERIES.items():
        for arg in args:
            fresh = query(arg)
            got = CACHED[name](arg)
            assert got == fresh, f"{name}({arg!r}) is stale after {after}: {got!r} != {fresh!r}"
            before = calls[(name, arg)]
            CACHED[name](arg)
            assert calls[(name, arg)] == before, f"{name}({arg!r}) was not cached after {after}"
            checked["reads"] += 1


def main() -> None:
    with connection.schema_editor() as editor:
        editor.create_model(Customer)
        editor.create_model(Order)
    Customer.objects.bulk_create(
        [
            Customer(id=1, name="ada", org=1, score=1.0),
            Customer(id=2, name="bob", org=1, score=2.0),
            Customer(id=3, name="cy", org=2, score=3.0),
        ]
    )
    Order.objects.create(id=10, customer_id=1, title="one")
    Order.objects.create(id=11, customer_id=2, title="two")
    report: dict[str, Any] = {"vendor": connection.vendor}
    check("seeding")

    # precision: ORM writes to customer 1 leave reads of customer 2 cached
    untouched = [("pk_get", 2), ("by_ids", (2, 3)), ("raw_name", 2), ("titles", 2)]
    before = calls.copy()
    customer = Customer.objects.get(pk=1)
    customer.name = "ada lovelace"
    customer.save()  # autocommit
    with transaction.atomic():
        Customer.objects.filter(pk=1).update(score=1.25)
    CACHED["pk_get"](1)
    for name, arg in untouched:
        CACHED[name](arg)
    report["precision"] = {
        f"{n}{a}": calls[(n, a)] - before[(n, a)] for n, a in [*untouched, ("pk_get", 1)]
    }
    check("ORM writes to one row")

    with transaction.atomic():  # create, and save() of a loaded object
        Customer.objects.create(id=4, name="dee", org=1, score=0.5)
        Order.objects.create(id=12, customer_id=4, title="four")
        bob = Customer.objects.get(pk=2)
        bob.org = 2
        bob.save()
    check("create and save in a transaction")
    Customer.objects.get(pk=4).delete()  # Django cascades to orders itself
    check("a delete with a cascade")
    Customer.objects.filter(org=2).update(score=9.0)
    check("a bulk update")
    Order.objects.filter(title__startswith="t").delete()
    check("a bulk delete")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE shop_customer SET org = %s WHERE id = %s", [2, 1])
        cursor.execute("INSERT INTO shop_customer (id, name, org, score) VALUES (5, 'bea', 1, 0)")
    check("raw SQL")
    Customer.objects.bulk_create([Customer(id=6, name="abe", org=1, score=4.0)])
    check("bulk_create")

    computed = sum(calls.values())
    try:
        with transaction.atomic():
            Customer.objects.filter(pk=3).update(name="never")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    with transaction.atomic():
        try:
            with transaction.atomic():  # a savepoint
                Customer.objects.filter(pk=5).update(name="never either")
                raise RuntimeError("roll back the savepoint")
        except RuntimeError:
            pass
    report["recomputed_after_rollbacks"] = sum(calls.values()) - computed
    check("rolled back writes")
    report["recomputed_by_check_after_rollbacks"] = sum(calls.values()) - computed

    # a read (a miss) inside a transaction that wrote is not cached
    with transaction.atomic():
        Customer.objects.filter(pk=3).update(name="pending")
        assert CACHED["raw_name"](3) == "pending"
        transaction.set_rollback(True)
    assert CACHED["raw_name"](3) == "cy", "a read of uncommitted rows was cached"

    # another thread: its own connection, hooked when it connects
    errors: list[str] = []

    def in_thread() -> None:
        try:
            before_thread = calls[("pk_get", 1)]
            CACHED["pk_get"](1)
            Customer.objects.filter(pk=1).update(name="from a thread")
            assert CACHED["pk_get"](1) == ["from a thread", 2]
            assert calls[("pk_get", 1)] == before_thread + 1
        except Exception as exc:  # reported to the test
            errors.append(repr(exc))
        finally:
            connection.close()

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join(30)
    report["thread_errors"] = errors
    check("a write from another thread")
    report["checked"] = checked["reads"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
