local template = [==[{
  "enrollmentConfigurationAssignments": [
    {
      "@odata.type": "#microsoft.graph.enrollmentConfigurationAssignment",
      "id": "705b021c-021c-705b-1c02-5b701c025b70",
      "target": {
        "@odata.type": "microsoft.graph.configurationManagerCollectionAssignmentTarget",
        "collectionId": "Collection Id value"
      }
    }
  ]
}]==]
local path = "/v1.0/deviceManagement/deviceEnrollmentConfigurations/b0c1d2e3-0000-4000-8000-000000000001/assign"
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXNpZw"}
local n = tonumber(os.getenv("N") or "100000")
local reqs = {}
local i = 0
function init(args)
  for k = 0, n - 1 do
    local body = string.gsub(template, "Collection Id value", "collection-" .. k)
    reqs[k] = wrk.format("POST", path, headers, body)
  end
end
function request()
  local r = reqs[i]
  i = (i + 1) % n
  return r
end
