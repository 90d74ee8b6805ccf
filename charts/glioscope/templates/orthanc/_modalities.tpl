{{/*
Orthanc's DicomModalities from orthanc.dicomModalities: the only DICOM peers Orthanc accepts (calling AET
and IP address checked: DicomCheckModalityHost). Hosts must be IP addresses, AETs 1-16 characters; C-STORE
and C-ECHO are allowed unless switched off, C-FIND/C-MOVE/C-GET only when switched on.
*/}}
{{- define "glioscope.orthanc.modalities" -}}
{{- $out := dict -}}
{{- range $name, $m := .Values.orthanc.dicomModalities -}}
{{- $aet := toString $m.aet -}}
{{- if or (lt (len $aet) 1) (gt (len $aet) 16) (contains "\\" $aet) -}}
{{- fail (printf "orthanc.dicomModalities.%s.aet must be 1-16 characters, got %q" $name $aet) -}}
{{- end -}}
{{- $host := toString $m.host -}}
{{- if not (regexMatch "^([0-9]{1,3}\\.){3}[0-9]{1,3}$|^[0-9a-fA-F:]*:[0-9a-fA-F:.]*$" $host) -}}
{{- fail (printf "orthanc.dicomModalities.%s.host must be an IP address (Orthanc compares the peer's address with it), got %q" $name $host) -}}
{{- end -}}
{{- $_ := set $out $name (dict
  "AET" $aet
  "Host" $host
  "Port" (int (default 104 $m.port))
  "AllowStore" (ternary $m.allowStore true (hasKey $m "allowStore"))
  "AllowEcho" (ternary $m.allowEcho true (hasKey $m "allowEcho"))
  "AllowFind" (ternary $m.allowFind false (hasKey $m "allowFind"))
  "AllowFindWorklist" false
  "AllowMove" (ternary $m.allowMove false (hasKey $m "allowMove"))
  "AllowGet" (ternary $m.allowGet false (hasKey $m "allowGet"))
  "AllowStorageCommitment" false) -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}
