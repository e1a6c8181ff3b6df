{{/*
Node set-up: `dfdaemon containerd-config` writes containerd's hosts.toml for
each registry (the node-setup DaemonSet) and restores what was there on
uninstall (the pre-delete hook). Both mount the node's certs directory
read-write and containerd's config directory read-only, at the same paths
as on the node, so the check compares containerd's config_path with the
real directory and `ca =` lines name node paths. With nodeSetup.runtime
crio, they write and restore CRI-O's registries.conf drop-in instead (its
directory mounted read-write), each registry's mirror being its own port
(proxy.registry_mirrors, darter.nodeSetup.crioMirrors). The images have no
shell: containerd-config runs as the init container's command, and its exit
code is the pod's status.
*/}}

{{/* Whether the nodes run CRI-O. */}}
{{- define "darter.nodeSetup.crio" -}}
{{- if eq .Values.nodeSetup.runtime "crio" }}true{{ end }}
{{- end }}

{{/*
CRI-O's mirror ports: registries[i] on the node's loopback at
crio.firstPort + i, as the dfdaemons' proxy.registry_mirrors.
*/}}
{{- define "darter.nodeSetup.crioMirrors" -}}
{{- $n := .Values.nodeSetup }}
{{- range $i, $r := $n.registries }}
- registry: {{ $r | quote }}
  addr: {{ printf "127.0.0.1:%d" (add (int $n.crio.firstPort) $i) | quote }}
{{- end }}
{{- end }}

{{/* Arguments naming the registries and the directory, shared by set-up and restore. */}}
{{- define "darter.nodeSetup.registryArgs" -}}
{{- $n := .Values.nodeSetup }}
{{- range $n.registries }}
- --registry
- {{ . | quote }}
{{- end }}
{{- if include "darter.nodeSetup.crio" . }}
- --crio
- {{ $n.crio.dropIn | quote }}
{{- else }}
{{- if $n.all }}
- --all
{{- end }}
- --certs-dir
- {{ $n.containerd.certsDir | quote }}
{{- end }}
{{- end }}

{{/*
The mirror URL containerd is given: the node's loopback with host network,
else the node's address (HOST_IP), where the hostPort publishes the proxy.
*/}}
{{- define "darter.nodeSetup.mirror" -}}
{{- $cfg := include "darter.dfdaemon.config" . | fromYaml }}
{{- $port := include "darter.port" $cfg.proxy.addr }}
{{- if .Values.dfdaemon.hostNetwork }}
{{- $host := include "darter.addrHost" $cfg.proxy.addr }}
{{- if or (eq $host "0.0.0.0") (eq $host "::") }}
{{- $host = "127.0.0.1" }}
{{- end }}
{{- printf "http://%s:%s" $host $port }}
{{- else }}
{{- printf "http://$(HOST_IP):%s" $port }}
{{- end }}
{{- end }}

{{/* containerd-config's arguments for the set-up. */}}
{{- define "darter.nodeSetup.setupArgs" -}}
{{- $n := .Values.nodeSetup }}
- containerd-config
{{- with (include "darter.nodeSetup.registryArgs" . | trim) }}{{ . | nindent 0 }}{{ end }}
{{- range $n.insecureRegistries }}
- --insecure
- {{ . | quote }}
{{- end }}
{{- if not (include "darter.nodeSetup.crio" .) }}
- --mirror
- {{ include "darter.nodeSetup.mirror" . | quote }}
{{- range $host, $path := $n.registryCAs }}
- --ca
- {{ printf "%s=%s" $host $path | quote }}
{{- end }}
{{- if $n.checkContainerd }}
- --check-containerd
- {{ $n.containerd.configFile | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Root, to write the node's root-owned certs directory; nothing more. */}}
{{- define "darter.nodeSetup.securityContext" -}}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- define "darter.nodeSetup.mounts" -}}
{{- if include "darter.nodeSetup.crio" . }}
- name: crio-registries
  mountPath: {{ dir .Values.nodeSetup.crio.dropIn }}
{{- else }}
- name: containerd-config
  mountPath: {{ dir .Values.nodeSetup.containerd.configFile }}
  readOnly: true
- name: containerd-certs
  mountPath: {{ .Values.nodeSetup.containerd.certsDir }}
{{- end }}
{{- end }}

{{- define "darter.nodeSetup.volumes" -}}
{{- if include "darter.nodeSetup.crio" . }}
- name: crio-registries
  hostPath:
    path: {{ dir .Values.nodeSetup.crio.dropIn }}
    type: DirectoryOrCreate
{{- else }}
- name: containerd-config
  hostPath:
    path: {{ dir .Values.nodeSetup.containerd.configFile }}
    type: DirectoryOrCreate
- name: containerd-certs
  hostPath:
    path: {{ .Values.nodeSetup.containerd.certsDir }}
    type: DirectoryOrCreate
{{- end }}
{{- end }}

{{/*
Where node pods run: exactly the dfdaemon DaemonSet's nodes, so every node
with a mirror is set up and restored, and no other node is pointed at one.
*/}}
{{- define "darter.nodePlacement" -}}
{{- $d := .Values.dfdaemon }}
{{- with $d.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $d.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $d.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $d.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The container a node pod runs once its init container succeeded. */}}
{{- define "darter.nodeSetup.pauseContainer" -}}
{{- $p := .root.Values.nodeSetup.pauseImage -}}
- name: {{ .name }}
  image: {{ printf "%s:%s" $p.repository $p.tag }}
  imagePullPolicy: {{ $p.pullPolicy }}
  resources:
    requests:
      cpu: 1m
      memory: 4Mi
    limits:
      memory: 16Mi
  securityContext:
    runAsUser: 65535
    runAsNonRoot: true
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: [ALL]
{{- end }}
