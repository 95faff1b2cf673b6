"""The contract that the model server image and everything around it agree on. Standard library only.

Training, the model store, the Pulumi components, local delivery, the benchmarks and the server
all import these modules instead of writing the same facts twice:

- :mod:`modelship_contract.manifest`: the model directory (``manifest.json`` beside one ONNX file),
  its names and versions, and the tensor datatypes with their ONNX Runtime and numpy names;
- :mod:`modelship_contract.signature`: where a model's signature lives and how it is checked (the
  OpenSSF ``model-signing`` library, imported only when a signature is made or verified);
- :mod:`modelship_contract.image`: the image's runtime contract (port, user, paths, health routes,
  environment variables);
- :mod:`modelship_contract.canary`: the canary analysis definition that the Rollout, the
  AnalysisTemplate's Job and the local release all follow.

The image gets the package too: the Dockerfile copies it from the build context, where
:func:`components.build_spec.stage_contract` puts a copy before every build (a Docker build sees
only its context, and the package lives once, at the top of the repository).
"""
