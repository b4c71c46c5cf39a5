"""Kubernetes objects: render the templates in manifests/, check them offline, apply them (`manifests`), and
patch what `helm template` renders for OpenShift (`openshift`). Imports `core` and `clients`."""
