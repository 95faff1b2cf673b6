"""``modelship-doctor``: what a platform engineer (and CI, first) checks before ``pulumi up``.

Every check asks the real tools (``pulumi``, ``az``, ``kubelogin``, ``docker``) with bounded
timeouts and reports what is wrong and the command that fixes it. See docs/azure.md, "Day one".
"""
