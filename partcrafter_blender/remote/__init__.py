"""The server backend: talk to a PartCrafter inference server instead of a local engine.

Everything in this package imports without bpy (no module here imports a Blender
one); `server_backend.py` is its Blender glue, and the operators and panels in
`operators/server_*.py` and `ui/server_*.py` are thin layers over that.
"""

from .client import Job, Policy, ServerClient
from .consent import ConsentLedger
from .endpoint import Endpoint, online_access_problem, parse_server_url, resolve_api_key
from .engine import RemoteEngine
from .errors import RemoteError
from .minimise import UploadImage, minimise_image_bytes, minimise_pixels
from .pending import PendingJob, PendingJobs

__all__ = [
    "ConsentLedger",
    "Endpoint",
    "Job",
    "PendingJob",
    "PendingJobs",
    "Policy",
    "RemoteEngine",
    "RemoteError",
    "ServerClient",
    "UploadImage",
    "minimise_image_bytes",
    "minimise_pixels",
    "online_access_problem",
    "parse_server_url",
    "resolve_api_key",
]
