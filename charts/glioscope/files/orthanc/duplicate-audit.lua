-- Glioscope: log every second copy of a stored SOP Instance UID (Orthanc keeps the stored one).
local function safe(value)
  if value == nil or value == '' then
    return '-'
  end
  return (string.gsub(tostring(value), '[^%w%.%-_]', '?'))
end

-- Best effort: a failed lookup never refuses an instance.
function ReceivedInstanceFilter(dicom, origin, info)
  local uid = dicom['SOPInstanceUID']
  if type(uid) ~= 'string' or uid == '' then
    return true
  end
  local ok, answer = pcall(RestApiPost, '/tools/lookup', uid, true)
  if ok then
    for _, item in ipairs(ParseJson(answer)) do
      if item['Type'] == 'Instance' then
        print('GLIOSCOPE-AUDIT duplicate-instance discarded, stored copy kept: id=' .. safe(item['ID']) ..
              ' sop=' .. safe(uid) .. ' study=' .. safe(dicom['StudyInstanceUID']) ..
              ' origin=' .. safe(origin['RequestOrigin']) .. ' remote_aet=' .. safe(origin['RemoteAet']) ..
              ' remote_ip=' .. safe(origin['RemoteIp']) .. ' called_aet=' .. safe(origin['CalledAet']) ..
              ' user=' .. safe(origin['Username']))
      end
    end
  end
  return true
end
