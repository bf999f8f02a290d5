# Roles for people, not for podmortem: bind them per namespace with a RoleBinding (or cluster-wide
# with a ClusterRoleBinding, which also opens the crashes of host processes outside any pod). The
# query API asks, by SubjectAccessReview, for exactly these verbs on coredumps.podmortem.io; no
# such API resource exists, RBAC checks the names alone. Deliberately not aggregated into the
# built-in view/edit roles: dumps hold a process's memory, secrets included.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-crash-viewer
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
rules:
  # Search and read crash events (signal, pod, command, stack), not the dumps.
  - apiGroups: [podmortem.io]
    resources: [coredumps]
    verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-dump-downloader
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
rules:
  - apiGroups: [podmortem.io]
    resources: [coredumps]
    verbs: [get, list]
  # Download the dumps themselves (one crash, or a pod's as tar.gz).
  - apiGroups: [podmortem.io]
    resources: [coredumps/dump]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-dump-deleter
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
rules:
  - apiGroups: [podmortem.io]
    resources: [coredumps]
    verbs: [get, list]
  # Download the dumps, and delete them (DELETE /v1/crashes/{id}/dump): the crash stays, marked
  # deleted by the caller. Whoever may take a core away may also see what it held.
  - apiGroups: [podmortem.io]
    resources: [coredumps/dump]
    verbs: [get, delete]
