"""Knowledge: item knowledge graph, KG embeddings, explanations and the LM re-ranker.

Only the graph and the embeddings are imported here; `recsage.knowledge.channel`,
`.explain` and `.lm_ranker` import the pipeline (and torch) and are imported on demand.
"""

from __future__ import annotations

from recsage.knowledge.graph import ItemKnowledgeGraph, KGPath, Neighbor, load_lastfm_kg

__all__ = ["ItemKnowledgeGraph", "KGPath", "Neighbor", "load_lastfm_kg"]
