{{- if .Values.namespace.create }}
apiVersion: v1
kind: Namespace
metadata:
  name: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
    # The collector is privileged, with hostPID and hostPath volumes: Pod Security admission at
    # baseline or restricted would refuse it. The other pods keep to restricted on their own.
    pod-security.kubernetes.io/enforce: privileged
    pod-security.kubernetes.io/warn: baseline
{{- end }}
