"""Word and character statistics of a text: reports with plain tqdm only, and is run again from the
start if its worker dies (it has nothing worth resuming)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Annotated, Literal

from pydantic import Field
from tqdm import tqdm

from tasks.jobtypes import JobContext, job_type


@job_type(title="Text statistics", on_worker_lost="restart")
def text_stats(
    ctx: JobContext,
    text: Annotated[str, Field(min_length=1, max_length=3000, description="The text to analyse")],
    top: Annotated[int, Field(ge=1, le=50, description="How many of the most frequent words to list")] = 5,
    case: Literal["ignore", "keep"] = "ignore",
    pause_ms: Annotated[float, Field(ge=0, le=1000, description="Pause after each word, to watch it work")] = 0,
) -> dict[str, object]:
    """Count the words, characters and lines of a text and list its most frequent words."""
    words = [word.strip(".,;:!?\"'()[]") for word in text.split()]
    counts: Counter[str] = Counter()
    for word in tqdm(words, desc="Counting words"):
        if word:
            counts[word if case == "keep" else word.lower()] += 1
        if pause_ms:
            time.sleep(pause_ms / 1000)
    print(f"{sum(counts.values()):,} words, {len(counts):,} of them distinct")
    return {
        "characters": len(text),
        "words": sum(counts.values()),
        "distinct_words": len(counts),
        "lines": text.count("\n") + 1,
        "top_words": [{"word": word, "count": n} for word, n in counts.most_common(top)],
    }
