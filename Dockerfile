# The server image. It runs against an external PostgreSQL with pgvector (DATABASE_URL); without one it
# starts the embedded PostgreSQL in /var/lib/rag-server (mount a volume there to keep the data).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAG_DATA_DIR=/var/lib/rag-server

WORKDIR /app
# CPU torch first, so that sentence-transformers does not pull the CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 || pip install torch==2.13.0
COPY pyproject.toml README.md ./
COPY rag_server ./rag_server
COPY ingest ./ingest
COPY evals ./evals
COPY sql ./sql
# Editable: the migrations in /app/sql are read from beside the package.
RUN pip install -e .

RUN useradd --system --create-home rag && mkdir -p /var/lib/rag-server && chown rag /var/lib/rag-server
USER rag
VOLUME /var/lib/rag-server
EXPOSE 8000
CMD ["rag-server", "serve", "--host", "0.0.0.0", "--port", "8000"]
