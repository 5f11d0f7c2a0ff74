# alflow worker / CLI image (CPU). Build from the repository root:
#   docker build -t alflow .
# Used by deploy/compose.yaml as the Prefect worker that runs the flows.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    ALFLOW_TORCH_THREADS=1 MPLBACKEND=Agg

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# torch first, from the CPU wheel index (no CUDA libraries); the constraints pin the same version.
RUN pip install "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml constraints.txt README.md ./
COPY alcore ./alcore
COPY oracles ./oracles
COPY generators ./generators
COPY flows ./flows
COPY data ./data
COPY deploy ./deploy
RUN pip install -c constraints.txt -e .

RUN useradd --create-home alflow && mkdir -p /app/runs && chown -R alflow /app/runs
USER alflow

# Default: a Prefect worker on the process pool (override the command for the CLI: `alflow ...`).
CMD ["prefect", "worker", "start", "--pool", "alflow-process", "--type", "process"]
