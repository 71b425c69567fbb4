"""What the demo game sells: items for XAG from the player's platform wallet, and real-money
packs paid through the platform's payment dialog (spec §2.2) and delivered by its callback.

Prices are ``Decimal`` built from text, never floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["ITEMS", "PACKS", "Item", "Pack", "item_names"]

SHOP_CURRENCY = "XAG"


@dataclass(frozen=True, slots=True)
class Item:
    """Something a player can own. ``price`` is in XAG, or None if it is not sold for XAG."""

    id: str
    name: str
    description: str
    icon: str
    price: Decimal | None = None
    unique: bool = False
    """At most one per player: buying it again is refused, and the withdrawal rolled back."""


@dataclass(frozen=True, slots=True)
class Pack:
    """A real-money product: ``price`` is what the payment dialog charges (``productPrice``);
    delivery grants ``quantity`` of ``item_id``."""

    id: str
    name: str
    description: str
    icon: str
    price: Decimal
    item_id: str
    quantity: int


_ITEMS = (
    Item("potion", "Health potion", "Restores 50 HP.", "\u2697", Decimal("2.50")),
    Item("sword", "Wooden sword", "Sturdy, if splintery.", "\u2694", Decimal("5.00")),
    Item("shield", "Magic shield", "Blocks one curse a day.", "\u25c8", Decimal("12.00")),
    Item("crown", "Golden crown", "One per kingdom.", "\u265b", Decimal("50.00"), unique=True),
    # Granted by real-money packs only.
    Item("gems", "Gems", "The premium currency.", "\u25c6"),
    Item("chest", "Treasure chest", "Something rattles inside.", "\u2756"),
)

_PACKS = (
    Pack("gems.small", "Gem pouch", "100 gems", "\u25c6", Decimal("0.99"), "gems", 100),
    Pack("gems.large", "Gem sack", "600 gems", "\u25c6", Decimal("4.99"), "gems", 600),
    Pack(
        "chest.gold",
        "Treasure chest",
        "A chest full of loot",
        "\u2756",
        Decimal("9.99"),
        "chest",
        1,
    ),
)

ITEMS: dict[str, Item] = {item.id: item for item in _ITEMS}
PACKS: dict[str, Pack] = {pack.id: pack for pack in _PACKS}
assert all(pack.item_id in ITEMS for pack in _PACKS)


def item_names() -> dict[str, str]:
    return {item.id: item.name for item in _ITEMS}
