"""Models of the Django test project."""

from __future__ import annotations

from django.db import models


class Customer(models.Model):
    name = models.TextField()
    org = models.IntegerField()
    score = models.FloatField(default=0.0)

    class Meta:
        app_label = "shop"


class Order(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="orders")
    title = models.TextField()

    class Meta:
        app_label = "shop"
