"""The stack for Kubernetes: manifests rendered from the model and the merged compose files (render.py), their
network policies (network.py), and what can be proven without a cluster: schemas and cross-references
(validate.py), Pod Security "restricted" and the model's facts (policy.py)."""
