{{/*
Trust helpers: which Secret holds the CA and its key, where members find
the CA certificate and their join token, and the pod volumes for them.
*/}}

{{/* The Secret with the CA certificate and key the manager signs with. */}}
{{- define "darter.caKeySecret" -}}
{{- $tls := .Values.tls }}
{{- if eq $tls.source "certManager" }}
{{- default (printf "%s-cm-ca" (include "darter.fullname" .)) $tls.certManager.caSecret }}
{{- else }}
{{- default (printf "%s-ca" (include "darter.fullname" .)) $tls.ca.existingSecret }}
{{- end }}
{{- end }}

{{/*
The Secret with one role's join token (key `token`): (dict "root" $ "role"
"peer"). One Secret per role, so a pod references no other role's token (a
kubelet can read every Secret a pod on its node references, whole):
tls.joinTokens.existingSecrets.<role> (cluster B), else the chart's
<release>-join-token-<role>.
*/}}
{{- define "darter.joinTokenSecret" -}}
{{- $given := index (.root.Values.tls.joinTokens.existingSecrets | default dict) .role }}
{{- if and $given (not .root.Values.manager.enabled) }}
{{- $given }}
{{- else }}
{{- printf "%s-join-token-%s" (include "darter.fullname" .root) (.role | replace "_" "-") }}
{{- end }}
{{- end }}

{{/* The manager-only Secret with bootstrap-tokens.yaml. */}}
{{- define "darter.bootstrapTokensSecret" -}}
{{- printf "%s-bootstrap-tokens" (include "darter.fullname" .) }}
{{- end }}

{{/* The name of the chart's ConfigMap with the CA certificate (key ca.crt). */}}
{{- define "darter.caConfigMap" -}}
{{- if and (eq .Values.tls.source "joinTokens") .Values.tls.ca.existingSecret .Values.tls.ca.certConfigMap }}
{{- .Values.tls.ca.certConfigMap }}
{{- else }}
{{- printf "%s-ca" (include "darter.fullname" .) }}
{{- end }}
{{- end }}

{{/*
cert-manager mode: the Secret of a Certificate the chart has issued by the
members' issuer only to publish the CA certificate (its ca.crt). Its own
key is a throwaway leaf's (no identity, no usage the cluster accepts), so
unlike the CA's Secret it is harmless on a node.
*/}}
{{- define "darter.caCertSecret" -}}
{{- printf "%s-ca-cert" (include "darter.fullname" .) }}
{{- end }}

{{/* The roles that enroll with a join token in this release. */}}
{{- define "darter.enrollingRoles" -}}
{{- $roles := list }}
{{- if and .Values.scheduler.enabled (include "darter.enrolls" (dict "root" . "role" "scheduler")) }}
{{- $roles = append $roles "scheduler" }}
{{- end }}
{{- if and .Values.seedPeer.enabled (include "darter.enrolls" (dict "root" . "role" "seed_peer")) }}
{{- $roles = append $roles "seed_peer" }}
{{- end }}
{{- if and .Values.dfdaemon.enabled (include "darter.enrolls" (dict "root" . "role" "peer")) }}
{{- $roles = append $roles "peer" }}
{{- end }}
{{- toJson $roles }}
{{- end }}

{{/*
The volume source of the CA certificate members use to recognise the
manager, projected as ca.crt; empty when they pin it (caCertHash).
*/}}
{{- define "darter.caCertVolumeSource" -}}
{{- $tls := .Values.tls }}
{{- if .Values.manager.enabled }}
{{- if eq $tls.source "certManager" }}
secret:
  secretName: {{ include "darter.caCertSecret" . }}
  items:
    - key: ca.crt
      path: ca.crt
{{- else }}
configMap:
  name: {{ include "darter.caConfigMap" . }}
  items:
    - key: ca.crt
      path: ca.crt
{{- end }}
{{- else if .Values.externalManager.caSecret }}
secret:
  secretName: {{ .Values.externalManager.caSecret }}
  items:
    - key: ca.crt
      path: ca.crt
{{- else if .Values.externalManager.caConfigMap }}
configMap:
  name: {{ .Values.externalManager.caConfigMap }}
  items:
    - key: ca.crt
      path: ca.crt
{{- end }}
{{- end }}

{{/*
Volumes a member needs for trust: (dict "root" $ "role" "peer" "component"
"dfdaemon" "replicas" 1). Enrolling members get their join token and the CA
certificate; cert-manager members every pod's certificate of their
StatefulSet, each under its pod name.
*/}}
{{- define "darter.memberTlsVolumes" -}}
{{- $root := .root }}
{{- if include "darter.enrolls" . }}
- name: join-token
  secret:
    secretName: {{ include "darter.joinTokenSecret" (dict "root" $root "role" .role) }}
    defaultMode: 0444
    items:
      - key: token
        path: token
{{- $ca := include "darter.caCertVolumeSource" $root }}
{{- if $ca }}
- name: ca
{{- $ca | trim | nindent 2 }}
{{- end }}
{{- else if include "darter.certManagerRole" . }}
- name: member-tls
  projected:
    defaultMode: 0444
    sources:
{{- range $i := until (int .replicas) }}
{{- $pod := printf "%s-%d" (include "darter.componentName" (dict "root" $root "component" $.component)) $i }}
      - secret:
          name: {{ $pod }}-tls
          items:
            - key: tls.crt
              path: {{ $pod }}/tls.crt
            - key: tls.key
              path: {{ $pod }}/tls.key
            - key: ca.crt
              path: {{ $pod }}/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* The mounts for darter.memberTlsVolumes. */}}
{{- define "darter.memberTlsMounts" -}}
{{- if include "darter.enrolls" . }}
- name: join-token
  mountPath: {{ include "darter.paths.joinToken" . | dir }}
  readOnly: true
{{- if include "darter.caCertVolumeSource" .root }}
- name: ca
  mountPath: {{ include "darter.paths.caCert" . | dir }}
  readOnly: true
{{- end }}
{{- else if include "darter.certManagerRole" . }}
- name: member-tls
  mountPath: {{ include "darter.paths.memberTlsDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Environment of cert-manager members: the paths of this pod's own files
(the config file is shared by every pod of the StatefulSet). `prefix` is
SCHEDULER or DFDAEMON.
*/}}
{{- define "darter.memberTlsEnv" -}}
{{- if include "darter.certManagerRole" . }}
{{- $dir := include "darter.paths.memberTlsDir" . }}
- name: {{ .prefix }}__TLS__CERT_FILE
  value: {{ $dir }}/$(POD_NAME)/tls.crt
- name: {{ .prefix }}__TLS__KEY_FILE
  value: {{ $dir }}/$(POD_NAME)/tls.key
- name: {{ .prefix }}__TLS__CA_FILE
  value: {{ $dir }}/$(POD_NAME)/ca.crt
{{- end }}
{{- end }}

{{/*
The CA this release generates (join-token mode without tls.ca.existingSecret):
the one in the Secret from an earlier install or upgrade, else a new ECDSA
P-256 CA. Computed once per render (kept in the root context), so the
Secret and the ConfigMap agree. JSON {crt, key}.
*/}}
{{- define "darter.trust.ca" -}}
{{- if not (hasKey . "darterGeneratedCA") }}
{{- $name := printf "%s-ca" (include "darter.fullname" .) }}
{{- $old := (lookup "v1" "Secret" .Release.Namespace $name | default dict).data | default dict }}
{{- $ca := dict }}
{{- if and (index $old "tls.crt") (index $old "tls.key") }}
{{- $ca = dict "crt" (index $old "tls.crt" | b64dec) "key" (index $old "tls.key" | b64dec) }}
{{- else }}
{{- $gen := genCAWithKey "darter cluster CA" 3650 (genPrivateKey "ecdsa") }}
{{- $ca = dict "crt" $gen.Cert "key" (include "darter.ecKeyToPkcs8" $gen.Key) }}
{{- end }}
{{- $_ := set . "darterGeneratedCA" $ca }}
{{- end }}
{{- toJson (get . "darterGeneratedCA") }}
{{- end }}

{{/* Whether this release generates the CA. */}}
{{- define "darter.trust.generatesCA" -}}
{{- $tls := .Values.tls }}
{{- if and .Values.manager.enabled (eq $tls.mode "mtls") (eq $tls.source "joinTokens") (not $tls.ca.existingSecret) }}true{{ end }}
{{- end }}

{{/*
The join tokens of this release's Secrets (role -> token), for the roles
that enroll: given in values, else from this role's Secret of an earlier
install or upgrade, else from the combined <release>-join-tokens Secret of
charts before one Secret per role (so an upgrade keeps the tokens), else
generated. Computed once per render. JSON.
*/}}
{{- define "darter.trust.tokens" -}}
{{- if not (hasKey . "darterJoinTokens") }}
{{- $combined := (lookup "v1" "Secret" .Release.Namespace (printf "%s-join-tokens" (include "darter.fullname" .)) | default dict).data | default dict }}
{{- $tokens := dict }}
{{- range $role := include "darter.enrollingRoles" . | fromJsonArray }}
{{- $t := index $.Values.tls.joinTokens.tokens $role }}
{{- if not $t }}
{{- $own := (lookup "v1" "Secret" $.Release.Namespace (printf "%s-join-token-%s" (include "darter.fullname" $) ($role | replace "_" "-")) | default dict).data | default dict }}
{{- if $own.token }}
{{- $t = $own.token | b64dec }}
{{- else if index $combined $role }}
{{- $t = index $combined $role | b64dec }}
{{- end }}
{{- end }}
{{- if not $t }}
{{- $t = printf "%s.%s" (randAlphaNum 6 | lower) (randAlphaNum 16 | lower) }}
{{- end }}
{{- $_ := set $tokens $role $t }}
{{- end }}
{{- $_ := set . "darterJoinTokens" $tokens }}
{{- end }}
{{- toJson (get . "darterJoinTokens") }}
{{- end }}

{{/*
A P-256 key from genPrivateKey "ecdsa" (SEC1, "EC PRIVATE KEY") as PKCS#8
("PRIVATE KEY"), the form the manager reads. Go writes a P-256 SEC1 key in
one fixed layout (121 bytes: version, 32-byte key, curve, public key), so
the key and public key are cut out and wrapped as Go's
MarshalPKCS8PrivateKey would; anything else fails the render.
*/}}
{{- define "darter.ecKeyToPkcs8" -}}
{{- $der := . | replace "-----BEGIN EC PRIVATE KEY-----" "" | replace "-----END EC PRIVATE KEY-----" "" | nospace | b64dec }}
{{- $head := "\x30\x77\x02\x01\x01\x04\x20" }}
{{- $curve := "\xa0\x0a\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07" }}
{{- if or (ne (len $der) 121) (not (hasPrefix $head $der)) (ne (substr 39 51 $der) $curve) }}
{{- fail "genPrivateKey \"ecdsa\" gave a key of an unexpected form; give the CA in tls.ca.existingSecret" }}
{{- end }}
{{- $inner := printf "\x30\x6b\x02\x01\x01\x04\x20%s%s" (substr 7 39 $der) (substr 51 121 $der) }}
{{- $pkcs8 := printf "\x30\x81\x87\x02\x01\x00\x30\x13\x06\x07\x2a\x86\x48\xce\x3d\x02\x01\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07\x04\x6d%s" $inner }}
{{- printf "-----BEGIN PRIVATE KEY-----\n%s\n-----END PRIVATE KEY-----\n" (regexReplaceAll "(.{64})" (b64enc $pkcs8) "${1}\n" | trimSuffix "\n") }}
{{- end }}
