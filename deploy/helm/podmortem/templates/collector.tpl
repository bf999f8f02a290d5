{{- $c := .Values.collector }}
{{- $p := $c.hostPaths }}
{{- $runtime := printf "%s/runtime" $p.handlerInstallDir }}
# The collector agent: one per node. It installs the host-side handler into kernel.core_pattern,
# delivers what the handler spools, and restores core_pattern when it stops.
apiVersion: v1
kind: ServiceAccount
metadata:
  name: podmortem-collector
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
---
# Its node's pods, across namespaces (a field selector on spec.nodeName): the crash's pod, container
# and owner; and a crashed pod's namespace (get), whose podmortem.io/capture label or annotation
# says whether its dumps are kept. Read-only.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: podmortem-collector
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
rules:
  - apiGroups: ['']
    resources: [pods]
    verbs: [get, list, watch]
  - apiGroups: ['']
    resources: [namespaces]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: podmortem-collector
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: podmortem-collector
subjects:
  - kind: ServiceAccount
    name: podmortem-collector
    namespace: {{ include "podmortem.namespace" . }}
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: podmortem-collector
  namespace: {{ include "podmortem.namespace" . }}
  labels:
    {{- include "podmortem.labels" . | nindent 4 }}
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: podmortem-collector
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  template:
    metadata:
      labels:
        app.kubernetes.io/name: podmortem-collector
        app.kubernetes.io/component: collector
      annotations:
        {{- include "podmortem.podAnnotations" 9402 | nindent 8 }}
        {{- include "podmortem.endpointsChecksum" . | nindent 8 }}
    spec:
      serviceAccountName: podmortem-collector
      # The handler reads /proc/<pid> of the crashing process, and the agent the host's /proc.
      hostPID: true
      # Longer than PODMORTEM_COLLECTOR_SHUTDOWN_GRACE_MS: a SIGKILL before the agent restored
      # core_pattern leaves the kernel piping cores to a handler nobody delivers for.
      terminationGracePeriodSeconds: 35
      {{- include "podmortem.scheduling" (list . $c) | nindent 6 }}
      initContainers:
        # The kernel runs the handler on the host, outside any container, by the absolute paths
        # the agent writes into the wrapper: its own Node binary and handler.ts. So Node and the
        # app are copied onto the host, and the agent runs from that copy, at the same paths.
        - name: stage-runtime
          image: {{ include "podmortem.image" (list . $c.image) }}
          {{- include "podmortem.pullPolicy" . | nindent 10 }}
          command:
            - /bin/sh
            - -ec
            - |
              dest={{ $runtime }}
              rm -rf "$dest.new" "$dest.old"
              mkdir -p "$dest.new"
              cp -a /usr/local/bin/node "$dest.new/node"
              cp -a /app "$dest.new/app"
              if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
              mv "$dest.new" "$dest"
              rm -rf "$dest.old"
          resources:
            {{- toYaml $c.stageResources | nindent 12 }}
          volumeMounts:
            - name: handler-bin
              mountPath: {{ $p.handlerInstallDir }}
      containers:
        - name: collector
          image: {{ include "podmortem.image" (list . $c.image) }}
          {{- include "podmortem.pullPolicy" . | nindent 10 }}
          command:
            - {{ $runtime }}/node
            - --disable-warning=ExperimentalWarning
            - {{ $runtime }}/app/collector/src/agent/main.ts
          workingDir: {{ $runtime }}/app
          securityContext:
            # Writing /proc/sys/kernel/core_pattern and core_pipe_limit needs a writable /proc/sys.
            privileged: true
            runAsUser: 0
          env:
            - name: PODMORTEM_COLLECTOR_NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_COLLECTOR_KAFKA_BROKERS" "kafka-brokers") | nindent 12 }}
            {{- include "podmortem.endpointEnv" (list "PODMORTEM_COLLECTOR_OTLP_ENDPOINT" "otlp-logs-endpoint") | nindent 12 }}
            # The folders below are the hostPath mounts of this pod, at the same paths on the host:
            # the handler (run by the kernel on the host) and the agent must agree on them.
            - name: PODMORTEM_COLLECTOR_SPOOL_DIR
              value: {{ $p.spoolDir | quote }}
            - name: PODMORTEM_COLLECTOR_STATE_DIR
              value: {{ $p.stateDir | quote }}
            - name: PODMORTEM_COLLECTOR_HANDLER_INSTALL_DIR
              value: {{ $p.handlerInstallDir | quote }}
            - name: PODMORTEM_COLLECTOR_STORAGE_ROOT
              value: /var/lib/podmortem/storage
            - name: PODMORTEM_COLLECTOR_OPS_PORT
              value: '9402'
            - name: PODMORTEM_COLLECTOR_SHUTDOWN_GRACE_MS
              value: '25000'
            {{- with $c.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - name: ops
              containerPort: 9402
          livenessProbe:
            httpGet:
              path: /healthz
              port: ops
            periodSeconds: 20
            failureThreshold: 3
          readinessProbe:
            # Ready once the spool is watched and the node's pods are listed.
            httpGet:
              path: /readyz
              port: ops
            periodSeconds: 10
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          volumeMounts:
            - name: spool
              mountPath: {{ $p.spoolDir }}
            - name: state
              mountPath: {{ $p.stateDir }}
            - name: handler-bin
              mountPath: {{ $p.handlerInstallDir }}
            - name: storage
              mountPath: /var/lib/podmortem/storage
      volumes:
        # Node-local and surviving the pod: crashes spooled while no agent runs, and the original
        # kernel settings, are there for the next agent.
        - name: spool
          hostPath:
            path: {{ $p.spoolDir }}
            type: DirectoryOrCreate
        - name: state
          hostPath:
            path: {{ $p.stateDir }}
            type: DirectoryOrCreate
        - name: handler-bin
          hostPath:
            path: {{ $p.handlerInstallDir }}
            type: DirectoryOrCreate
        - name: storage
          persistentVolumeClaim:
            claimName: {{ include "podmortem.claimName" . }}
