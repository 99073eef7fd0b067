{{/* Names and labels shared by every template of the chart. */}}

{{- define "loadgen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Leaves room for the "-master"/"-worker" suffixes within the 63-character name limit. */}}
{{- define "loadgen.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "loadgen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "loadgen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "loadgen.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "loadgen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: harness
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.runId }}
harness.dev/run-id: {{ . | quote }}
{{- end }}
{{- end }}

{{- define "loadgen.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The model service's base URL: target.host, else the in-cluster DNS name of its Service. */}}
{{- define "loadgen.host" -}}
{{- if .Values.target.host }}
{{- .Values.target.host }}
{{- else }}
{{- printf "http://%s.%s.svc.cluster.local:%d" .Values.target.service (default .Release.Namespace .Values.target.namespace) (int .Values.target.port) }}
{{- end }}
{{- end }}

{{- define "loadgen.locustfile" -}}
{{- if .Values.locustfile.inline }}/etc/locust/locustfile.py{{ else }}{{ .Values.locustfile.path }}{{ end }}
{{- end }}

{{/* Both Jobs end by themselves; this bounds them if a worker never connects or Locust hangs. */}}
{{- define "loadgen.deadlineSeconds" -}}
{{- add (int .Values.runTimeSeconds) (int .Values.expectWorkersMaxWaitSeconds) (int .Values.stopTimeoutSeconds) 120 }}
{{- end }}

{{- define "loadgen.volumeMounts" -}}
- name: results
  mountPath: /results
- name: tmp
  mountPath: /tmp
{{- if .Values.locustfile.inline }}
- name: locustfile
  mountPath: /etc/locust
  readOnly: true
{{- end }}
{{- if .Values.harnessFiles }}
- name: harness-parts
  mountPath: /etc/harness-parts
  readOnly: true
- name: harness-files
  mountPath: /etc/harness
{{- end }}
{{- end }}

{{- define "loadgen.volumes" -}}
- name: results
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.locustfile.inline }}
- name: locustfile
  configMap:
    name: {{ include "loadgen.fullname" . }}-locustfile
{{- end }}
{{- if .Values.harnessFiles }}
- name: harness-parts
  projected:
    sources:
      {{- range $index, $_ := .Values.harnessFiles }}
      - configMap:
          name: {{ include "loadgen.fullname" $ }}-files-{{ $index }}
      {{- end }}
- name: harness-files
  emptyDir: {}
{{- end }}
{{- end }}

{{/* Joins each file's parts (<name>.0000, <name>.0001, ...: a ConfigMap holds at most 1 MiB) into /etc/harness,
then links the input files of requests made of files where inputs_layout.tsv says (lines "<name>\t<path>", the
path relative to /etc/harness: inputs/<request's index>/...), laid out as on the harness's machine. */}}
{{- define "loadgen.joinFiles" -}}
{{- if .Values.harnessFiles }}
for first in /etc/harness-parts/*.0000; do
  name=$(basename "$first" .0000)
  cat /etc/harness-parts/"$name".[0-9][0-9][0-9][0-9] > /etc/harness/"$name" || exit 1
done
if [ -f /etc/harness/inputs_layout.tsv ]; then
  tab=$(printf '\t')
  dir=
  while IFS=$tab read -r name path; do
    [ "${path%/*}" = "$dir" ] || { dir=${path%/*}; mkdir -p /etc/harness/"$dir"; } &&
      ln /etc/harness/"$name" /etc/harness/"$path" || exit 1
  done < /etc/harness/inputs_layout.tsv
fi
{{- end }}
{{- end }}

{{- define "loadgen.podSpec" -}}
restartPolicy: Never
{{- if .Values.serviceAccountName }}
serviceAccountName: {{ .Values.serviceAccountName }}
{{- else }}
serviceAccountName: {{ include "loadgen.fullname" . }}
{{- end }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "loadgen.env" -}}
- name: PYTHONUNBUFFERED
  value: "1"
{{- if .Values.harnessFiles }}
- name: HARNESS_LOAD_PLAN
  value: /etc/harness/load_plan.json
{{- end }}
{{- end }}

{{/* Header values `${NAME}` of the scenario's requests: a Secret the harness creates holds exactly those names. */}}
{{- define "loadgen.envFrom" -}}
{{- with .Values.envSecret }}
envFrom:
  - secretRef:
      name: {{ . }}
{{- end }}
{{- end }}
