"""Default values of every setting, as named constants in one place."""

from __future__ import annotations

REDIS_URL = "redis://127.0.0.1:6379/0"
HOME = "~/.skuai"
RESULT_TTL = 7 * 24 * 3600  # seconds a finished job stays readable
RESULT_ARCHIVE_TTL = 90 * 24 * 3600  # seconds a finished batch's archived results stay readable
IMAGE_TTL = 24 * 3600  # seconds an uploaded image waits for a worker at most
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000
MAX_BATCH_IMAGES = 10_000
MAX_REQUEST_BYTES = 2 * 1024**3  # one batch upload, all parts together
MAX_ARCHIVE_BYTES = 4 * 1024**3  # what one uploaded archive may expand to
MAX_JSON_BYTES = 2 * 1024**2  # a JSON body without an image: 10,000 URLs of 200 bytes
MAX_ARCHIVE_SECONDS = 60.0  # unpacking one archive (bz2 unpacks ~20 MB/s on a busy core)
MAX_QUEUED = 200_000
WEBHOOK_RETRY_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0)
VISIBILITY_TIMEOUT = 1800  # must exceed the longest chunk; see docs/reliability.md
BLOB_TIMEOUT = 5.0  # seconds one blob store request may take to connect, and to answer
REDIS_TIMEOUT = 1.0  # seconds one Redis command may take before the API answers 503
UPLOAD_TIMEOUT = 120  # seconds an unfinished upload may add no image before it is rolled back;
# at least twice MAX_ARCHIVE_SECONDS, as an archive entry may take that long before it is stored
CHUNK_SIZE = 64  # two forward passes of 32: the second is decoded while the first runs
LOG_LEVEL = "INFO"
LOG_FORMAT = "text"
INFERENCE_PRECISION = "auto"  # fp16 on a GPU, fp32 on the CPU
DECODE_THREADS = 0  # per inference worker process; 0: one per core in its CPU affinity
API_PORT = 8000
FLOWER_PORT = 5555
MAX_WAIT_SECONDS = 30
MAX_WAITS_PER_KEY = 32  # long polls (`?wait=`) one API key may hold open at once
CLIENT_TIMEOUT = 10  # seconds for a request's headers, between body reads, and idle keep-alive
API_CONNECTIONS = 1000  # connections one API worker process serves at once
RESULTS_PAGE = 100
WEBHOOK_TIMEOUT = 10  # seconds for one delivery attempt
WEBHOOK_ENDPOINT_CONCURRENCY = 2  # attempts in flight to one endpoint (1 while it fails)
RATE_LIMIT = 50.0  # requests per second per API key, sustained
RATE_BURST = 200  # requests per API key in a burst
WORKER_MAX_MEMORY_MB = 8192  # a pool process above this is replaced after its current task
BATCH_WAIT_MS = 2  # how long a worker waits for more single-image jobs to batch together
SKU_SHARE_WINDOW = 1000  # latest predictions per tenant behind /metrics' SKU shares
SKU_SHARE_TOP = 10  # SKUs per tenant /metrics gives a share (bounds the labels)
