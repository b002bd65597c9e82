# mvit-deploy with the exact pinned environment of requirements.lock.
#   docker build -t mvit-deploy .
#   docker run --rm -v "$PWD/out:/out" mvit-deploy models
FROM python:3.11-slim
WORKDIR /app
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# torch 2.13.0+cpu comes from PyTorch's CPU wheel index; everything else from PyPI.
COPY requirements.lock ./
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -r requirements.lock
COPY pyproject.toml README.md ./
COPY mvit_deploy ./mvit_deploy
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
ENTRYPOINT ["mvit-deploy"]
CMD ["--help"]
