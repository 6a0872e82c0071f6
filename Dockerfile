# Captioner service image: serving dependencies only, the default model baked in.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CAPTIONER_HOST=0.0.0.0 \
    CAPTIONER_PORT=8000 \
    CAPTIONER_ARTIFACTS_DIR=/srv/captioner/artifacts

WORKDIR /srv/captioner

# Dependencies first, so code changes do not reinstall them: serving's list only (no TensorFlow;
# tests/app/test_serving_install.py installs the same file and serves from it).
COPY requirements-serve.txt ./
RUN pip install -r requirements-serve.txt

# Serving's code only: training/ (and its Keras side) stays out of the image. uvicorn imports
# `app` from the working directory.
COPY captioning captioning
COPY app app

# The default model; mount another artifacts folder over this path to serve your own.
COPY artifacts artifacts

RUN useradd --system --uid 10001 --home-dir /srv/captioner captioner
USER captioner

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD python -c "import os,urllib.request;urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CAPTIONER_PORT','8000'), timeout=2)"

CMD ["sh", "-c", "exec uvicorn app.main:app --host \"$CAPTIONER_HOST\" --port \"$CAPTIONER_PORT\" --timeout-graceful-shutdown 30"]
