from decimal import Decimal

from django.db import migrations, models


def seed(apps, schema_editor):
    Item = apps.get_model("demo", "Item")
    Item.objects.bulk_create(
        Item(name=f"Item {n}", price=Decimal(n) + Decimal("0.99")) for n in range(1, 21)
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=100)),
                ("price", models.DecimalField(decimal_places=2, max_digits=8)),
            ],
            options={"ordering": ["id"]},
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
