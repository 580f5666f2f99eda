"""The site's areas, in the menu's order: the one place that says which are open and which are still coming.

An area's issue sets `built=True` when its pages open; until then the menu, the home page and the area's own
page show it as coming (templates/home/area.html), never as a link that leads nowhere.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Area:
    url_name: str
    title: str
    blurb: str
    built: bool


AREAS = (
    Area(
        "marketplace:index",
        "Data",
        "Buy and sell datasets under clear terms; analyse data you may not see.",
        True,
    ),
    Area(
        "models_market:index",
        "Models",
        "Tokenized models: train or upload, license, call with receipts; royalties flow up the lineage.",
        True,
    ),
    Area(
        "dao:index",
        "DAOs",
        "Treasuries governed by proposals and votes, helped by reinforcement learning.",
        False,
    ),
    Area(
        "federation:index", "Federated learning", "Train one model together without pooling your data.", True
    ),
    Area("finance:index", "Finance", "Shared fraud and risk models, fine-tuned and reviewed.", False),
    Area("ledger:index", "Ledger", "Every transaction, signed, hash-chained and verifiable offline.", True),
)
