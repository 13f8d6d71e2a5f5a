# The server image, in two stages: the first builds the wheel from the sources, the second installs that
# wheel (not the source tree) beside CPU torch.
#   docker build -t rag-server .
#   docker run -p 8000:8000 -v rag-data:/var/lib/rag-server rag-server
# It starts with the demo knowledge base (RAG_DEMO=1: the first start embeds it and trains its router, a few
# minutes; later starts take seconds). Without the demo, load your documents with `rag-server ingest`:
#   docker run -e RAG_DEMO=0 -p 8000:8000 -v rag-data:/var/lib/rag-server rag-server
#   docker run -v rag-data:/var/lib/rag-server -v "$PWD/docs:/docs:ro" rag-server rag-server ingest /docs -d docs
# It runs against an external PostgreSQL with pgvector when DATABASE_URL is set; without one it starts the
# embedded PostgreSQL in /var/lib/rag-server (mount a volume there to keep the data).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sql ./sql
# rag_server/migrations links to ../sql: the wheel gets a copy of the migrations.
COPY rag_server ./rag_server
COPY ingest ./ingest
COPY evals ./evals
RUN pip wheel --no-cache-dir --no-deps -w /dist .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAG_DATA_DIR=/var/lib/rag-server RAG_DEMO=1
# CPU torch first, from PyTorch's CPU index, so that sentence-transformers does not pull the CUDA build.
RUN pip install --retries 1 --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY --from=build /dist/ /tmp/dist/
RUN pip install /tmp/dist/rag_server-*.whl && rm -r /tmp/dist

RUN useradd --system --create-home rag && mkdir -p /var/lib/rag-server && chown rag /var/lib/rag-server
USER rag
WORKDIR /home/rag
VOLUME /var/lib/rag-server
EXPOSE 8000
CMD ["rag-server", "serve", "--host", "0.0.0.0", "--port", "8000"]
