{{/*
Names, labels, images and small helpers shared by every template.
*/}}

{{- define "darter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's base name; components append -manager, -scheduler, ... */}}
{{- define "darter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's name: (dict "root" $ "component" "scheduler") */}}
{{- define "darter.componentName" -}}
{{- printf "%s-%s" (include "darter.fullname" .root) .component }}
{{- end }}

{{- define "darter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object: (dict "root" $ "component" "manager") */}}
{{- define "darter.labels" -}}
helm.sh/chart: {{ include "darter.chart" .root }}
{{ include "darter.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: darter
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that select a component's pods. */}}
{{- define "darter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "darter.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* An image reference: (dict "root" $ "image" .Values.manager.image) */}}
{{- define "darter.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{- define "darter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "darter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The port of a listen address: "0.0.0.0:8002" and "[::]:8002" give 8002. */}}
{{- define "darter.port" -}}
{{- $port := regexFind "[0-9]+$" (toString .) }}
{{- if not $port }}
{{- fail (printf "%q is not an address with a port" (toString .)) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* The host part of a listen address: "127.0.0.1:4001" gives 127.0.0.1. */}}
{{- define "darter.addrHost" -}}
{{- regexReplaceAll ":[0-9]+$" (toString .) "" | trimPrefix "[" | trimSuffix "]" }}
{{- end }}

{{/* The manager's gRPC address(es) members dial, as a list in YAML. */}}
{{- define "darter.managerAddrs" -}}
{{- if .Values.manager.enabled }}
{{- $cfg := include "darter.manager.config" . | fromYaml }}
- {{ printf "%s.%s.svc.%s:%s" (include "darter.componentName" (dict "root" . "component" "manager")) .Release.Namespace .Values.clusterDomain (include "darter.port" $cfg.grpc_addr) }}
{{- else }}
- {{ .Values.externalManager.addr }}
{{- end }}
{{- end }}

{{/* imagePullSecrets of every pod. */}}
{{- define "darter.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The environment every member gets: its pod name, IP and node. */}}
{{- define "darter.downwardEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}

{{/* Liveness, readiness and startup probes on /healthz of the metrics port. */}}
{{- define "darter.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 5
  failureThreshold: 60
readinessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  failureThreshold: 3
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 6
{{- end }}

{{/* Seconds in a duration written 90s, 10m or 1h. */}}
{{- define "darter.seconds" -}}
{{- $d := toString . }}
{{- $n := regexFind "^[0-9]+" $d | int }}
{{- if hasSuffix "h" $d }}{{ mul $n 3600 }}{{ else if hasSuffix "m" $d }}{{ mul $n 60 }}{{ else }}{{ $n }}{{ end }}
{{- end }}
