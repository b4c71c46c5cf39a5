"""The lab's administrator: provision a class of learners on one cluster, show their progress, tear them down.

Layer: top (the administrator's tools, beside the CLI): imports any layer below. One job a module: report,
objects (Kubernetes), s3users, progress (`status`), learners (`provision`, `teardown`).

For each learner (`docbot_lib.core.names.LabNames(user)`):
  Milvus       their database, reader and writer roles granted in it, their two users (vectordb.secure_learner)
  Kubernetes   their project (namespace <user>, an OpenShift AI data science project), a RoleBinding that gives
               the learner `edit` there and nowhere else (what creating an InferenceService, the chatbot's
               Deployment, Route and Secrets needs), the data connection Secret, a Secret `docbot-learner`
               holding their Milvus URI, user name and their two users' tokens (never root's; for their .env),
               and the reader's and writer's Secrets the chatbot and ingestion read (vectordb.credentials_secrets)
  S3           with `s3_users=True`: an S3 user of their own (`docbot-<user>`, through the storage's IAM API: AWS,
               Ceph RGW / ODF, the local moto) whose policy allows their prefix `<user>/` of the class's bucket and
               nothing else, and their data connection holds that user's key, not the administrator's. Without it
               every learner's data connection holds the class's key and only the prefix separates them.
  One model    with `model="NAMESPACE/NAME"` (the class shares one InferenceService the administrator deployed,
               token authentication on): in the model's namespace a service account per learner whose token may
               only `get` that InferenceService (serving.token_auth_manifests), and the model's endpoint, served
               name and that token in the learner's `docbot-learner` Secret. Without it, each learner deploys
               their own model (notebook 03) where the cluster has GPUs for it.
Idempotent: what exists is kept and reported "already there" (a second run changes nothing); passwords are
read back from the learner's Secret, so their tokens keep working. Nothing secret is ever printed.
"""

from docbot_lib.lab.learners import provision, teardown
from docbot_lib.lab.objects import DATA_CONNECTION, LEARNER_SECRET, ROLEBINDING, SharedModel, learner_objects
from docbot_lib.lab.progress import status
from docbot_lib.lab.report import LabReport, LabRow
from docbot_lib.lab.s3users import S3_ACTIONS, drop_s3_user, ensure_s3_user, learner_s3_policy, s3_user

__all__ = [
    "DATA_CONNECTION",
    "LEARNER_SECRET",
    "LabReport",
    "LabRow",
    "ROLEBINDING",
    "S3_ACTIONS",
    "SharedModel",
    "drop_s3_user",
    "ensure_s3_user",
    "learner_objects",
    "learner_s3_policy",
    "provision",
    "s3_user",
    "status",
    "teardown",
]
