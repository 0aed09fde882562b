{{/* Names, labels and the pieces every citygrid process pod shares. */}}

{{- define "citygrid.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "citygrid.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selectorLabels: call with (dict "root" $ "component" "ingest") */}}
{{- define "citygrid.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "citygrid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "citygrid.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "citygrid.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "citygrid.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{- printf "%s-kafka:9092" (include "citygrid.fullname" .) -}}
{{- else -}}
{{- required "kafka.externalBootstrap is required when kafka.enabled is false" .Values.kafka.externalBootstrap -}}
{{- end -}}
{{- end -}}

{{- define "citygrid.workerReplicas" -}}
{{- $n := int .Values.worker.replicas -}}
{{- if eq $n 0 -}}{{- $n = int .Values.kafka.partitions -}}{{- end -}}
{{- if gt $n (int .Values.kafka.partitions) -}}
{{- fail (printf "worker.replicas (%d) exceeds kafka.partitions (%d): extra Faust workers would sit idle; raise the partitions or lower the replicas" $n (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* Pod annotations: scrape hints plus a checksum so a config change rolls the pods. */}}
{{- define "citygrid.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/config.yaml") . | sha256sum }}
{{- if .Values.metrics.annotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/*
A citygrid process pod spec; call with
(dict "root" $ "component" "ingest" "args" (list "stream" "ingest") "values" .Values.ingest
      "env" (list ...) "volumes" (list ...) "mounts" (list ...))
*/}}
{{- define "citygrid.processPod" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "citygrid.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: 60
containers:
  - name: {{ .component }}
    image: {{ include "citygrid.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: {{ toJson .args }}
    envFrom:
      - configMapRef:
          name: {{ include "citygrid.fullname" $root }}-config
    {{- with .env }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    ports:
      - name: metrics
        containerPort: {{ $root.Values.metrics.port }}
        protocol: TCP
    startupProbe:
      httpGet: {path: /metrics, port: metrics}
      periodSeconds: 5
      failureThreshold: 60
    readinessProbe:
      httpGet: {path: /metrics, port: metrics}
      periodSeconds: 10
    livenessProbe:
      httpGet: {path: /metrics, port: metrics}
      periodSeconds: 20
      failureThreshold: 3
    resources:
      {{- toYaml .values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: data, mountPath: /data}
      {{- with .mounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 256Mi}
  {{- if and .values.persistence .values.persistence.enabled }}
  - name: data
    persistentVolumeClaim:
      claimName: {{ include "citygrid.fullname" $root }}-{{ .component }}
  {{- else }}
  - name: data
    emptyDir: {sizeLimit: 1Gi}
  {{- end }}
  {{- with .volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PVC for a single-instance component's data; call with (dict "root" $ "component" "anchorer" "values" .Values.anchorer) */}}
{{- define "citygrid.pvc" -}}
{{- if .values.persistence.enabled }}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "citygrid.fullname" .root }}-{{ .component }}
  labels:
    {{- include "citygrid.labels" .root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  accessModes: [ReadWriteOnce]
  {{- with .values.persistence.storageClass }}
  storageClassName: {{ . }}
  {{- end }}
  resources:
    requests:
      storage: {{ .values.persistence.size }}
{{- end }}
{{- end -}}
