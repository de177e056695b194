"""Google's documented values of the Gemini API enums the gateway reads but does not send on (or
sends only to Google's own upstreams), so that a misspelt value is the 400 Google answers
(``Invalid value at '...' (TYPE_ENUM)``) on every provider instead of being accepted.

Sources: the Gemini API reference (https://ai.google.dev/api/generate-content: HarmCategory,
HarmBlockThreshold, MediaResolution, ServiceTier; https://ai.google.dev/api/embeddings:
TaskType) and Vertex AI's (HarmBlockMethod, the image and jailbreak categories,
CODE_RETRIEVAL_QUERY), since safety settings reach ``vertex`` upstreams too; the values are the
google-genai SDK's. Enum names are case-sensitive, as Google's parser takes them (``serviceTier``
aside: the SDK sends it lower case and its REST spelling is not pinned, so any case passes).
"""

from __future__ import annotations

HARM_CATEGORIES = frozenset({
    "HARM_CATEGORY_UNSPECIFIED",
    "HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_CIVIC_INTEGRITY",
    # The PaLM-era categories the Gemini API reference still lists.
    "HARM_CATEGORY_DEROGATORY", "HARM_CATEGORY_TOXICITY", "HARM_CATEGORY_VIOLENCE", "HARM_CATEGORY_SEXUAL",
    "HARM_CATEGORY_MEDICAL", "HARM_CATEGORY_DANGEROUS",
    # Vertex AI only.
    "HARM_CATEGORY_JAILBREAK", "HARM_CATEGORY_IMAGE_HATE", "HARM_CATEGORY_IMAGE_DANGEROUS_CONTENT",
    "HARM_CATEGORY_IMAGE_HARASSMENT", "HARM_CATEGORY_IMAGE_SEXUALLY_EXPLICIT",
})
HARM_BLOCK_THRESHOLDS = frozenset({
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED", "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH",
    "BLOCK_NONE", "OFF",
})
HARM_BLOCK_METHODS = frozenset({"HARM_BLOCK_METHOD_UNSPECIFIED", "SEVERITY", "PROBABILITY"})
MEDIA_RESOLUTIONS = frozenset({
    "MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM",
    "MEDIA_RESOLUTION_HIGH",
})
# A part's own ``mediaResolution.level`` (Gemini 3) also has an ultra-high level.
PART_MEDIA_RESOLUTIONS = MEDIA_RESOLUTIONS | {"MEDIA_RESOLUTION_ULTRA_HIGH"}
SERVICE_TIERS = frozenset({"unspecified", "standard", "flex", "priority"})
TASK_TYPES = frozenset({
    "TASK_TYPE_UNSPECIFIED", "RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
    "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY",
})
