"""Canary analysis: one definition (steps, queries, thresholds) and one judge, for every runner.

The local release (:mod:`delivery.canary`) calls :func:`modelserver.canary.analysis.analyze`
in process; in the cloud, the Argo Rollouts AnalysisTemplate runs ``python -m modelserver.canary
analyze`` as a Job metric in the very image being released (pinned by digest), so both runners ask
the same Prometheus questions and apply the same thresholds. Standard library only.
"""
