# The image of docker-compose.yml's worker, webapp and cdc services: the project with the Celery
# worker and the examples' extras, the examples importable from the working directory.
FROM python:3.12-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY depcache ./depcache
COPY depcache_celery ./depcache_celery
COPY depcache_pytest ./depcache_pytest
RUN pip install --no-cache-dir ".[celery,hiredis,prometheus,examples,cdc]"
COPY examples ./examples
RUN mkdir -p /data
