"""modelship's inference server: an Open Inference Protocol (KServe V2) REST API on ONNX Runtime.

Layers: ``manifest`` (the model directory contract), ``predictor`` (ONNX Runtime, no web framework),
``protocol`` (V2 JSON <-> numpy), ``http`` (Starlette routes and the error mapping), ``settings``
(environment), ``metrics`` and ``logs``; ``python -m modelserver`` starts uvicorn.
"""

__version__ = "0.1.0"
