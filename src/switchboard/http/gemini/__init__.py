"""The Gemini API (``generateContent`` and friends), inbound: any configured model, of any
provider, can be called with the google-genai SDKs and the Gemini CLI. See docs/api-gemini.md
for the field mapping and its limits.
"""

from switchboard.http.gemini.api import METHODS, GeminiGenerate
from switchboard.http.gemini.routes import GEMINI_ONLY_PREFIX, GeminiRoutes, is_gemini

__all__ = ["GEMINI_ONLY_PREFIX", "METHODS", "GeminiGenerate", "GeminiRoutes", "is_gemini"]
