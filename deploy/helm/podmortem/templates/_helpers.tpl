{{/*
Names are fixed, not derived from the release: the query API's SubjectAccessReviews and the user
roles people bind name them, so one podmortem per cluster.
*/}}

{{- define "podmortem.namespace" -}}
{{- .Values.namespace.name -}}
{{- end -}}

{{/* The labels of every object's metadata: the base's part-of, and Helm's own. */}}
{{- define "podmortem.labels" -}}
app.kubernetes.io/part-of: podmortem
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* A service's image: its registry or the global one, its tag or the global one or appVersion. */}}
{{- define "podmortem.image" -}}
{{- $root := index . 0 -}}
{{- $image := index . 1 -}}
{{- $registry := $image.registry | default $root.Values.image.registry -}}
{{- $tag := $image.tag | default $root.Values.image.tag | default $root.Chart.AppVersion -}}
{{- printf "%s/%s:%s" $registry $image.repository $tag -}}
{{- end -}}

{{- define "podmortem.pullPolicy" -}}
{{- with .Values.image.pullPolicy }}
imagePullPolicy: {{ . }}
{{- end }}
{{- end -}}

{{/* Where a pod runs: priority, tolerations, node selection and affinity, each only when set. */}}
{{- define "podmortem.scheduling" -}}
{{- $root := index . 0 -}}
{{- $svc := index . 1 -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $svc.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $svc.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pods' annotations: Prometheus scraping, and the endpoints' checksum (a change rolls them). */}}
{{- define "podmortem.podAnnotations" -}}
prometheus.io/scrape: 'true'
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{- define "podmortem.endpointsChecksum" -}}
checksum/endpoints: {{ toJson .Values.endpoints | sha256sum }}
{{- end -}}

{{/* The shared claim's name. */}}
{{- define "podmortem.claimName" -}}
{{- .Values.storage.existingClaim | default "podmortem-storage" -}}
{{- end -}}

{{/* A variable from the endpoints ConfigMap. */}}
{{- define "podmortem.endpointEnv" -}}
- name: {{ index . 0 }}
  valueFrom:
    configMapKeyRef:
      name: podmortem-endpoints
      key: {{ index . 1 }}
{{- end -}}

{{/* The hardened container of the services that are not the collector. */}}
{{- define "podmortem.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: [ALL]
{{- end -}}
