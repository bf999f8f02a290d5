# The addresses of the servers podmortem talks to, in one place: the services take them by key.
apiVersion: v1
kind: ConfigMap
metadata:
  name: podmortem-endpoints
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
data:
  kafka-brokers: {{ .Values.endpoints.kafkaBrokers | quote }}
  elasticsearch-url: {{ .Values.endpoints.elasticsearchUrl | quote }}
  prometheus-url: {{ .Values.endpoints.prometheusUrl | quote }}
  otlp-logs-endpoint: {{ .Values.endpoints.otlpLogsEndpoint | quote }}
  otlp-traces-endpoint: {{ .Values.endpoints.otlpTracesEndpoint | quote }}
