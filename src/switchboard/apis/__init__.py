"""Prompts published as REST APIs: the lifecycle and A/B split rules (lifecycle.py), the output
check and repair (output.py) and the OpenAPI 3.1 generator (openapi.py). Pure: the HTTP side is
http/apis/ and http/admin/apis.py; docs/prompt-apis.md."""
