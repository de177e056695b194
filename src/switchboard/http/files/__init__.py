"""Files and batches (``/v1/files``, ``/v1/batches``) to OpenAI and Azure OpenAI, with every
object's owner recorded and a finished batch's cost in the usage ledger (docs/api-files.md)."""

from switchboard.http.files.edge import FilesEndpoint, is_files_path
from switchboard.http.files.service import FileService, budget_gated

__all__ = ["FileService", "FilesEndpoint", "budget_gated", "is_files_path"]
