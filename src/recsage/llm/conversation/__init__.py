"""Multi-turn conversational recommendation over a catalogue.

Each user turn becomes structured constraints (include/exclude genres, a year range, a
mood, references to the last shown list such as "more like the second one" or "not that",
titles the user names) plus a semantic query. Rules and text embeddings do this with no
generative model at all; when an LLM backend is configured, it also fills a JSON schema,
and its answer is kept only where it is grounded in the user's words (years that appear in
the text, positions inside the shown list, genres of the catalogue) - rules win conflicts.

Every turn ranks the whole catalogue: cosine to the (decayed) query vectors and to the
items the user pointed at, the user's long-term taste (a history profile and, with a
pipeline, its own ranking), genre and mood boosts, then hard filters (excluded genres,
years, rejected and already-seen items). Shown items that were not picked sink a little,
so a critique always moves the list.
"""

from __future__ import annotations

from recsage.llm.conversation.catalogue import Catalogue, KeywordEncoder
from recsage.llm.conversation.parse import Constraints, TurnParse, parse_llm, parse_rules
from recsage.llm.conversation.session import ConversationSession, SessionWeights, Turn

__all__ = [
    "Catalogue",
    "Constraints",
    "ConversationSession",
    "KeywordEncoder",
    "SessionWeights",
    "Turn",
    "TurnParse",
    "parse_llm",
    "parse_rules",
]
