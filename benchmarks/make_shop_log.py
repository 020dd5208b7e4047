"""A realistic (synthetic, seeded) pet-shop log for the own-data walkthrough (docs/own-data.md).

Writes two files the way a shop would export them, column names and all:

- products.csv: product_id,title,category,description,price (500 products)
- events.csv:   user_id,item_id,timestamp,event_type (30,000 events, ISO times, view/cart/purchase)

Shoppers have one or two favourite animals and a favourite brand; sessions browse a few
products of a favourite category (popular products more often), sometimes a matching
accessory; a viewed product is added to the cart now and then and some carts are bought.
Generated data is never committed: write it under runs/ (git-ignored).

    python benchmarks/make_shop_log.py --out runs/shop
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

ANIMALS = ("Cat", "Dog", "Fish", "Bird", "Small Pet")
KINDS = {
    "Cat": ("Food", "Litter", "Toys", "Scratchers", "Beds"),
    "Dog": ("Food", "Treats", "Toys", "Leashes", "Beds"),
    "Fish": ("Food", "Aquariums", "Filters", "Decor"),
    "Bird": ("Food", "Cages", "Perches"),
    "Small Pet": ("Food", "Bedding", "Hutches"),
}
BRANDS = ("Pawsome", "Whisker & Co", "Barkley", "AquaPure", "FeatherNest", "Nibbles", "Vetline")
ADJECTIVES = ("Premium", "Organic", "Deluxe", "Everyday", "Eco", "Compact", "Large", "Classic",
              "Grain-Free", "Odour-Control", "Interactive", "Orthopaedic")  # fmt: skip
SINGULAR = {"Toys": "Toy", "Scratchers": "Scratcher", "Beds": "Bed", "Treats": "Treats",
            "Leashes": "Leash", "Aquariums": "Aquarium", "Filters": "Filter", "Cages": "Cage",
            "Perches": "Perch", "Hutches": "Hutch"}  # fmt: skip
PRICE = {"Food": 18.0, "Litter": 14.0, "Toys": 9.0, "Scratchers": 35.0, "Beds": 45.0,
         "Treats": 7.0, "Leashes": 16.0, "Aquariums": 120.0, "Filters": 40.0, "Decor": 12.0,
         "Cages": 90.0, "Perches": 8.0, "Bedding": 11.0, "Hutches": 110.0}  # fmt: skip


def make_products(rng: np.random.Generator, n: int) -> list[dict[str, object]]:
    """`n` products spread over animal/kind categories, with brands, texts and prices."""
    cats = [(a, k) for a in ANIMALS for k in KINDS[a]]
    out = []
    for i in range(n):
        animal, kind = cats[int(rng.integers(len(cats)))]
        brand = BRANDS[int(rng.integers(len(BRANDS)))]
        adj = ADJECTIVES[int(rng.integers(len(ADJECTIVES)))]
        title = f"{brand} {adj} {animal} {SINGULAR.get(kind, kind)}"
        desc = (
            f"{adj} {kind.lower()} for your {animal.lower()} by {brand}. "
            f"{'Made from natural ingredients. ' if kind in ('Food', 'Treats') else ''}"
            f"Rated {rng.integers(35, 50) / 10:.1f} by our customers."
        )
        price = round(float(PRICE[kind] * rng.lognormal(0.0, 0.35)), 2)
        out.append(
            {
                "product_id": f"SKU-{10001 + i}",
                "title": title,
                "category": f"{animal} {kind}",
                "description": desc,
                "price": price,
                "_animal": animal,
                "_brand": brand,
            }
        )
    return out


def make_events(
    rng: np.random.Generator, products: list[dict[str, object]], n_users: int, n_events: int
) -> list[tuple[str, str, str, str]]:
    """Sessions of views with cart and purchase funnels, sorted by time (ISO, UTC)."""
    n_items = len(products)
    animal_of = np.array([ANIMALS.index(str(p["_animal"])) for p in products])
    brand_of = np.array([BRANDS.index(str(p["_brand"])) for p in products])
    popularity = rng.zipf(1.6, n_items).clip(1, 200).astype(np.float64)
    activity = rng.lognormal(0.0, 0.9, n_users)
    activity /= activity.sum()
    start = np.datetime64("2024-01-01T00:00:00")
    span_s = 120 * 86400  # Jan .. Apr 2024
    fav_animals = [rng.choice(len(ANIMALS), size=int(rng.integers(1, 3)), replace=False)
                   for _ in range(n_users)]  # fmt: skip
    fav_brand = rng.integers(len(BRANDS), size=n_users)
    events: list[tuple[float, str, str, str]] = []
    first_visits = list(rng.permutation(n_users))  # everyone shops at least once
    while len(events) < n_events:
        u = int(first_visits.pop()) if first_visits else int(rng.choice(n_users, p=activity))
        t = float(rng.uniform(0, span_s))
        animals = fav_animals[u] if rng.random() < 0.85 else rng.integers(len(ANIMALS), size=1)
        weight = (
            popularity * np.isin(animal_of, animals) * np.where(brand_of == fav_brand[u], 3.0, 1.0)
        )
        weight /= weight.sum()
        for item in rng.choice(n_items, size=int(rng.integers(1, 7)), p=weight):
            t += float(rng.exponential(90.0))
            pid = str(products[int(item)]["product_id"])
            events.append((t, f"U{u + 1:05d}", pid, "view"))
            if rng.random() < 0.22:
                t += float(rng.exponential(60.0))
                events.append((t, f"U{u + 1:05d}", pid, "cart"))
                if rng.random() < 0.55:
                    t += float(rng.exponential(300.0))
                    events.append((t, f"U{u + 1:05d}", pid, "purchase"))
    events = sorted(events[:n_events])
    out = []
    for t, user, pid, kind in events:
        when = (start + np.timedelta64(int(t), "s")).astype(str) + "Z"
        out.append((user, pid, when, kind))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/shop"))
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--products", type=int, default=500)
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    products = make_products(rng, args.products)
    events = make_events(rng, products, args.users, args.events)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "products.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "title", "category", "description", "price"])
        for p in products:
            w.writerow([p["product_id"], p["title"], p["category"], p["description"], p["price"]])
    with (args.out / "events.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp", "event_type"])
        w.writerows(events)
    n_users = len({e[0] for e in events})
    print(f"wrote {args.out}/products.csv ({len(products)} products) and {args.out}/events.csv "
          f"({len(events):,} events, {n_users:,} users)")  # fmt: skip


if __name__ == "__main__":
    main()
