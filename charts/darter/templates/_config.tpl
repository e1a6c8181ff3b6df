{{/*
The config file of each binary: what the chart computes (listen addresses,
paths of mounted files, the manager's address, trust) with the component's
`config:` value merged over it, so any field can be set. Ports of
containers, Services and probes are read back from these addresses, so they
always agree with what the binary listens on.
*/}}

{{/*
Deep merge of .src into .dst (a map, changed in place). Unlike sprig's
mergeOverwrite, false, "" and 0 (and null) in .src win too.
*/}}
{{- define "darter.deepMerge" -}}
{{- $dst := .dst }}
{{- range $k, $v := .src }}
{{- if and (kindIs "map" $v) (kindIs "map" (get $dst $k)) }}
{{- include "darter.deepMerge" (dict "dst" (get $dst $k) "src" $v) }}
{{- else }}
{{- $_ := set $dst $k $v }}
{{- end }}
{{- end }}
{{- end }}

{{/* Paths where pods find mounted files. */}}
{{- define "darter.paths.config" -}}/etc/darter/config{{- end }}
{{- define "darter.paths.caCert" -}}/etc/darter/ca/ca.crt{{- end }}
{{- define "darter.paths.caKeyDir" -}}/etc/darter/ca-key{{- end }}
{{- define "darter.paths.joinToken" -}}/etc/darter/join-token/token{{- end }}
{{- define "darter.paths.bootstrapTokens" -}}/etc/darter/bootstrap-tokens/bootstrap-tokens.yaml{{- end }}
{{- define "darter.paths.memberTlsDir" -}}/etc/darter/tls{{- end }}

{{/* Whether members of a role enroll with a join token: (dict "root" $ "role" "peer") */}}
{{- define "darter.enrolls" -}}
{{- $tls := .root.Values.tls }}
{{- if eq $tls.mode "mtls" }}
{{- if or (eq $tls.source "joinTokens") (eq .role "peer") }}true{{- end }}
{{- end }}
{{- end }}

{{/* Whether members of a role get cert-manager certificates. */}}
{{- define "darter.certManagerRole" -}}
{{- $tls := .root.Values.tls }}
{{- if and (eq $tls.mode "mtls") (eq $tls.source "certManager") (ne .role "peer") }}true{{- end }}
{{- end }}

{{/*
The tls section of a member (scheduler, seed peer, peer):
(dict "root" $ "role" "scheduler"). Members with cert-manager certificates
get their per-pod file paths from the environment (see darter.memberTlsEnv).
*/}}
{{- define "darter.memberTls" -}}
{{- $root := .root }}
{{- $tls := $root.Values.tls }}
{{- if eq $tls.mode "plaintext" }}
mode: plaintext
{{- else if include "darter.enrolls" . }}
mode: mtls
join_token_file: {{ include "darter.paths.joinToken" . }}
{{- if and (not $root.Values.manager.enabled) $root.Values.externalManager.caCertHash }}
ca_cert_hash: {{ $root.Values.externalManager.caCertHash | quote }}
{{- else }}
ca_file: {{ include "darter.paths.caCert" . }}
{{- end }}
{{- else }}
mode: mtls
{{- end }}
{{- end }}

{{- define "darter.manager.config" -}}
{{- $v := .Values.manager }}
{{- $c := dict "grpc_addr" "0.0.0.0:65003" "rest_addr" "0.0.0.0:8080" "metrics_addr" "0.0.0.0:8081" }}
{{- if eq $v.database.type "sqlite" }}
{{- $_ := set $c "database_url" "sqlite:///var/lib/darter/manager/db/manager.db?mode=rwc" }}
{{- end }}
{{- if $v.redis.url }}
{{- $_ := set $c "cache" (dict "redis_url" $v.redis.url) }}
{{- end }}
{{- if eq .Values.tls.mode "plaintext" }}
{{- $_ := set $c "tls" (dict "mode" "plaintext") }}
{{- else }}
{{- $caDir := include "darter.paths.caKeyDir" . }}
{{- $t := dict "mode" "mtls" "ca_cert_file" (printf "%s/tls.crt" $caDir) "ca_key_file" (printf "%s/tls.key" $caDir) }}
{{- $_ := set $t "bootstrap_tokens_file" (include "darter.paths.bootstrapTokens" .) }}
{{- $_ := set $c "tls" $t }}
{{- end }}
{{- include "darter.deepMerge" (dict "dst" $c "src" (deepCopy $v.config)) }}
{{- toYaml $c }}
{{- end }}

{{- define "darter.memberManager" -}}
addrs:
{{- with (include "darter.managerAddrs" . | trim) }}{{ . | nindent 2 }}{{ end }}
cluster_id: {{ .Values.clusterID }}
{{- end }}

{{- define "darter.scheduler.config" -}}
{{- $c := dict "grpc_addr" "0.0.0.0:8002" "metrics_addr" "0.0.0.0:8000" }}
{{- $_ := set $c "manager" (include "darter.memberManager" . | fromYaml) }}
{{- $_ := set $c "host" (dict "idc" .Values.host.idc "location" .Values.host.location) }}
{{- $_ := set $c "tls" (include "darter.memberTls" (dict "root" . "role" "scheduler") | fromYaml) }}
{{- include "darter.deepMerge" (dict "dst" $c "src" (deepCopy .Values.scheduler.config)) }}
{{- toYaml $c }}
{{- end }}

{{/* What seed peers and peers share: (dict "root" $ "role" "peer") */}}
{{- define "darter.daemonBase" -}}
{{- $root := .root }}
host:
  idc: {{ $root.Values.host.idc | quote }}
  location: {{ $root.Values.host.location | quote }}
manager:
{{- with (include "darter.memberManager" $root | trim) }}{{ . | nindent 2 }}{{ end }}
upload:
  grpc_addr: 0.0.0.0:4000
  piece_addr: 0.0.0.0:4003
metrics_addr: 0.0.0.0:4002
tls:
{{- with (include "darter.memberTls" . | trim) }}{{ . | nindent 2 }}{{ end }}
{{- end }}

{{- define "darter.seedPeer.config" -}}
{{- $c := include "darter.daemonBase" (dict "root" . "role" "seed_peer") | fromYaml }}
{{- $_ := set $c.host "seed" true }}
{{- $_ := set $c "storage" (dict "data_dir" "/var/lib/darter/dfdaemon") }}
{{- $_ := set $c "download" (dict "socket" "/run/darter/dfdaemon.sock") }}
{{- $_ := set $c "proxy" (dict "enabled" false) }}
{{- include "darter.deepMerge" (dict "dst" $c "src" (deepCopy .Values.seedPeer.config)) }}
{{- toYaml $c }}
{{- end }}

{{- define "darter.dfdaemon.config" -}}
{{- $v := .Values.dfdaemon }}
{{- $c := include "darter.daemonBase" (dict "root" . "role" "peer") | fromYaml }}
{{- $_ := set $c "storage" (dict "data_dir" $v.dataDir) }}
{{- $_ := set $c "download" (dict "socket" (printf "%s/dfdaemon.sock" $v.socketDir)) }}
{{- $proxyHost := ternary "127.0.0.1" "0.0.0.0" $v.hostNetwork }}
{{- $_ := set $c "proxy" (dict "addr" (printf "%s:%d" $proxyHost (int $v.proxyPort))) }}
{{- if and .Values.nodeSetup.enabled (include "darter.nodeSetup.crio" .) }}
{{- /* CRI-O names no registry to a mirror: a port per registry. */}}
{{- $_ := set $c.proxy "registry_mirrors" (include "darter.nodeSetup.crioMirrors" . | fromYamlArray) }}
{{- end }}
{{- include "darter.deepMerge" (dict "dst" $c "src" (deepCopy $v.config)) }}
{{- /* Registries containerd reaches over plain HTTP are the mirror's too. */}}
{{- $insecure := concat (default (list) $c.proxy.insecure_registries) .Values.nodeSetup.insecureRegistries | uniq }}
{{- if $insecure }}
{{- $_ := set $c.proxy "insecure_registries" $insecure }}
{{- end }}
{{- /* The mirror fetches from registries with a private CA too (the files are mounted from the node). */}}
{{- if .Values.nodeSetup.registryCAs }}
{{- $bts := default (dict) $c.back_to_source }}
{{- $cas := concat (default (list) $bts.ca_certs) (values .Values.nodeSetup.registryCAs | sortAlpha) | uniq }}
{{- $_ := set $bts "ca_certs" $cas }}
{{- $_ := set $c "back_to_source" $bts }}
{{- end }}
{{- toYaml $c }}
{{- end }}
