"""A served model as an mteb model: mteb's own evaluation of the server the kit measures.

``ServedEncoder(embed, profile)`` is an mteb encoder whose ``encode`` sends the texts of mteb's
data loader through `embed` (the kit's HTTP client, or its caching encoder) with the profile's
instruction template, and whose similarity is cosine. Running ``task.evaluate(ServedEncoder(...))``
is how a test shows that the kit's score equals what mteb computes for the same server.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from mteb.models.abs_encoder import AbsEncoder
from mteb.models.model_meta import ModelMeta, ScoringFunction
from mteb.types import PromptType

from embedgate.quality.benchmarks import BenchmarkError, mteb_task, task_instruction


class ServedEncoder(AbsEncoder):
    """mteb's encoder protocol over ``embed(list[str]) -> (n, dim) array``."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], profile: Any, *,
                 instructions: bool = True, name: str | None = None):
        self._embed = embed
        self.profile = profile
        self.instructions = instructions
        self.mteb_model_meta = ModelMeta.create_empty({
            "name": name or profile.hf_id or f"embedgate/{profile.name}",
            "embed_dim": profile.embedding_dim, "max_tokens": profile.max_tokens,
            "similarity_fn_name": ScoringFunction.COSINE, "framework": ["API"],
            "use_instructions": bool(profile.instructions.get("query"))})
        self._instruction: dict[str, str] = {}

    def _format(self, texts: Sequence[str], task_metadata: Any,
                prompt_type: PromptType | None) -> list[str]:
        """The profile's templates as the kit applies them: the query template (with mteb's task
        prompt as {task}) on queries and on both sides of symmetric tasks, the document template
        on retrieval documents."""
        if not self.instructions:
            return list(texts)
        if prompt_type == PromptType.document:
            return [self.profile.format_document(t) for t in texts]
        name = task_metadata.name
        if name not in self._instruction:
            try:
                self._instruction[name] = task_instruction(mteb_task(name))
            except BenchmarkError:  # a task mteb does not register (a test's own)
                prompt = task_metadata.prompt
                self._instruction[name] = (prompt.get("query", "") if isinstance(prompt, dict)
                                           else prompt or "")
        return [self.profile.format_query(t, task=self._instruction[name]) for t in texts]

    def encode(self, inputs: Any, *, task_metadata: Any, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Any) -> np.ndarray:
        texts = [text for batch in inputs for text in batch["text"]]
        if not texts:
            return np.empty((0, self.profile.embedding_dim), dtype=np.float32)
        return np.asarray(self._embed(self._format(texts, task_metadata, prompt_type)),
                          dtype=np.float32)


__all__ = ["ServedEncoder"]
