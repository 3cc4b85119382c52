{{/* Name and labels shared by every object of the release. */}}
{{- define "cairn.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cairn.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cairn.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cairn.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "cairn.claimName" -}}
{{- .Values.persistence.data.existingClaim | default (printf "%s-data" (include "cairn.fullname" .)) -}}
{{- end -}}

{{/* Environment of every Cairn container: the ConfigMap plus secrets by reference. */}}
{{- define "cairn.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "cairn.fullname" . }}
  {{- with .Values.secrets.connectors.existingSecret }}
  - secretRef:
      name: {{ . }}
  {{- end }}
env:
  {{- include "cairn.databaseUrl" . | nindent 2 }}
  {{- with .Values.secrets.qdrant.existingSecret }}
  - name: CAIRN_QDRANT_API_KEY
    valueFrom:
      secretKeyRef:
        name: {{ . }}
        key: {{ $.Values.secrets.qdrant.key }}
  {{- end }}
{{- end -}}

{{/* CAIRN_DATABASE_URL from its Secret: every Cairn container, and the migration Job (which runs before
the ConfigMap exists, so it takes nothing else). */}}
{{- define "cairn.databaseUrl" -}}
- name: CAIRN_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.database.existingSecret is required" .Values.secrets.database.existingSecret }}
      key: {{ .Values.secrets.database.key }}
{{- end -}}

{{/* Pod-level settings and the data volume shared by every Cairn pod. */}}
{{- define "cairn.podCommon" -}}
{{ include "cairn.podPlacement" . }}
volumes:
  - name: data
    {{- if .Values.persistence.data.enabled }}
    persistentVolumeClaim:
      claimName: {{ include "cairn.claimName" . }}
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- end -}}

{{/* Where and as whom a Cairn pod runs (the migration Job too, which mounts no volume). */}}
{{- define "cairn.podPlacement" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
