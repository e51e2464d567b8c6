# lrsearch worker image: the package with its PostgreSQL driver.
#   docker build -t lrsearch .
#   docker run --rm -e LRSEARCH_STORAGE=postgresql+psycopg://... lrsearch lrsearch start studies/digits.toml
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY pyproject.toml README.md ./
COPY lrsearch ./lrsearch
COPY studies ./studies
RUN pip install '.[postgres]'

# the shared artifacts volume (see docker-compose.yml)
RUN mkdir -p /artifacts
CMD ["lrsearch", "--help"]
