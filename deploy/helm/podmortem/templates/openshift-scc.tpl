{{- if .Values.openshift.enabled }}
{{- $ns := include "podmortem.namespace" . }}
{{- range $grant := list (dict "scc" "privileged" "account" "podmortem-collector" "why" "privileged, hostPID, hostPath volumes, root") (dict "scc" "anyuid" "account" "podmortem-retention" "why" "root (every capability dropped): it owns what the collector wrote") }}
# OpenShift admits a pod under a SecurityContextConstraints its service account may use: the
# {{ $grant.account }} pods need {{ $grant.scc }} ({{ $grant.why }}). The other services take
# restricted-v2, which gives them a user of the namespace's range.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-scc-{{ $grant.scc }}
  labels:
    {{- include "podmortem.labels" $ | nindent 4 }}
rules:
  - apiGroups: [security.openshift.io]
    resources: [securitycontextconstraints]
    resourceNames: [{{ $grant.scc }}]
    verbs: [use]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: podmortem-scc-{{ $grant.scc }}
  namespace: {{ $ns }}
  labels:
    {{- include "podmortem.labels" $ | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podmortem-scc-{{ $grant.scc }}
subjects:
  - kind: ServiceAccount
    name: {{ $grant.account }}
    namespace: {{ $ns }}
---
{{- end }}
{{- end }}
