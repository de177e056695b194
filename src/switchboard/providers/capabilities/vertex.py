"""Capabilities of provider type ``vertex`` (see the package docstring): the ``gemini`` cells,
plus custom metadata labels, which Vertex AI takes on generateContent and the Gemini API does not."""

from __future__ import annotations

from switchboard.providers.capabilities import Table, refused, translated
from switchboard.providers.capabilities.gemini import CELLS, SAMPLES, table

_VERTEX = {
    # Not the Gemini API's 5: Vertex AI's errors give its range as 1 to 16 stop sequences.
    "stop:more_than_5": translated("generationConfig.stopSequences", "Vertex AI takes up to 16"),
    "metadata": translated("labels", "each key/value must be a valid label (lower case, <= 63 chars)"),
    "user": translated("labels.user", "when it is a valid label value; otherwise not sent"),
    # Google's reference: "This field is not supported in Vertex AI."
    "enable_enhanced_civic_answers": refused("a Gemini API field Vertex AI does not take"),
}

TABLE: Table = table({**CELLS, **_VERTEX})

__all__ = ["SAMPLES", "TABLE"]  # the replies are Gemini's
