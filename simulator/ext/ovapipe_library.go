package simulator

// What Debian's vAPI content library simulator (vapi/simulator, registered in the main) lacks
// for deploying an OVF library item the way vCenter does, added around its handler:
//
//   - file uploads are checked against the checksum_info given when the file was added to
//     the update session; a mismatch fails the upload and the session cannot complete;
//   - a deployed VM gets the deployment spec's annotation (Debian drops it) and the item's
//     disk files (Debian's deploy completes the import lease without writing any disk);
//   - the same endpoints answer under /api (vSphere 7.0 U2's spelling), see ovapipeServeAPI.

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/vim25/types"
)

const (
	ovapipeRestPrefix      = "/rest"
	ovapipeFileDataPrefix  = "/rest/com/vmware/cis/data/"
	ovapipeSessionFilePath = "/rest/com/vmware/content/library/item/updatesession/file/id:"
	ovapipeSessionPath     = "/rest/com/vmware/content/library/item/update-session/id:"
	ovapipeOVFItemPath     = "/rest/com/vmware/vcenter/ovf/library-item/id:"
	ovapipeRestBodyLimit   = 1 << 20 // JSON request bodies (never file data)
	ovapipeRestSessionPath = "/rest/com/vmware/cis/session"
)

// ovapipeLogin: the one user and password the simulator accepts (set by OvapipeRun).
var ovapipeLogin = url.UserPassword("user", "pass")

func ovapipeLoginPassword() string {
	password, _ := ovapipeLogin.Password()
	return password
}

// ovapipeID: the ids Debian's vAPI simulator makes (UUIDs), so no id names a path.
var ovapipeID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

type ovapipeExpectedFile struct {
	session   string
	name      string
	algorithm string
	checksum  string
}

var ovapipeLibrary = struct {
	sync.Mutex
	expected map[string]ovapipeExpectedFile // upload file id -> checksum to verify
	failed   map[string]string              // update session id -> why it cannot complete
}{expected: map[string]ovapipeExpectedFile{}, failed: map[string]string{}}

func ovapipeNewHash(algorithm string) hash.Hash {
	switch strings.ToUpper(algorithm) {
	case "SHA1":
		return sha1.New()
	case "MD5":
		return md5.New()
	case "SHA256":
		return sha256.New()
	case "SHA512":
		return sha512.New()
	}
	return nil
}

// ovapipeVAPIError answers a vAPI error as vCenter's /rest API does.
func ovapipeVAPIError(w http.ResponseWriter, status int, kind, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]interface{}{
		"type": kind,
		"value": map[string]interface{}{
			"messages": []map[string]string{{"id": kind, "default_message": message}},
		},
	})
}

func ovapipeReplay(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for key, values := range rec.Header() {
		w.Header()[key] = values
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func ovapipeLibraryHandler(next http.Handler) http.Handler {
	var handler http.HandlerFunc
	handler = func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, ovapipeAPIPrefix) {
			ovapipeServeAPI(handler, w, r)
			return
		}
		if !strings.HasPrefix(r.URL.Path, ovapipeRestPrefix+"/") {
			next.ServeHTTP(w, r)
			return
		}
		action := r.URL.Query().Get("~action")
		switch {
		case r.Method == http.MethodPost && action == "" && r.URL.Path == ovapipeRestSessionPath:
			// Debian's vAPI session accepts any user and password; vCenter checks them.
			user, password, ok := r.BasicAuth()
			if !ok || user != ovapipeLogin.Username() || password != ovapipeLoginPassword() {
				ovapipeVAPIError(w, http.StatusUnauthorized, "com.vmware.vapi.std.errors.unauthenticated",
					"login failed")
				return
			}
			next.ServeHTTP(w, r)
		case r.Method == http.MethodPost && action == "add" && strings.HasPrefix(r.URL.Path, ovapipeSessionFilePath):
			ovapipeAddFile(next, w, r)
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, ovapipeFileDataPrefix):
			ovapipeUploadFile(next, w, r)
		case r.Method == http.MethodPost && action == "complete" && strings.HasPrefix(r.URL.Path, ovapipeSessionPath):
			id := strings.TrimPrefix(r.URL.Path, ovapipeSessionPath)
			ovapipeLibrary.Lock()
			why, failed := ovapipeLibrary.failed[id]
			ovapipeLibrary.Unlock()
			if failed {
				ovapipeVAPIError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.not_allowed_in_current_state",
					"update session "+id+" cannot complete: "+why)
				return
			}
			next.ServeHTTP(w, r)
		case r.Method == http.MethodPost && action == "deploy" && strings.HasPrefix(r.URL.Path, ovapipeOVFItemPath):
			ovapipeDeploy(next, w, r)
		default:
			next.ServeHTTP(w, r)
		}
	}
	return handler
}

// ovapipeReadBody reads a (small, JSON) request body and puts it back for the next handler.
func ovapipeReadBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, ovapipeRestBodyLimit))
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, err
}

func ovapipeAddFile(next http.Handler, w http.ResponseWriter, r *http.Request) {
	session := strings.TrimPrefix(r.URL.Path, ovapipeSessionFilePath)
	body, err := ovapipeReadBody(r)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var spec struct {
		File struct {
			Name     string `json:"name"`
			Checksum *struct {
				Algorithm string `json:"algorithm"`
				Checksum  string `json:"checksum"`
			} `json:"checksum_info"`
		} `json:"file_spec"`
	}
	if json.Unmarshal(body, &spec) == nil && spec.File.Checksum != nil &&
		ovapipeNewHash(spec.File.Checksum.Algorithm) == nil {
		ovapipeVAPIError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.invalid_argument",
			fmt.Sprintf("checksum algorithm %q is not one of SHA1, MD5, SHA256, SHA512", spec.File.Checksum.Algorithm))
		return
	}
	if name := spec.File.Name; name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." {
		ovapipeVAPIError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.invalid_argument",
			fmt.Sprintf("file name %q: expected a plain file name", name))
		return
	}
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var answer struct {
		Value struct {
			Upload *struct {
				URI string `json:"uri"`
			} `json:"upload_endpoint"`
		} `json:"value"`
	}
	if rec.Code == http.StatusOK && spec.File.Checksum != nil &&
		json.Unmarshal(rec.Body.Bytes(), &answer) == nil && answer.Value.Upload != nil {
		parts := strings.Split(answer.Value.Upload.URI, "/")
		if len(parts) >= 2 {
			ovapipeLibrary.Lock()
			ovapipeLibrary.expected[parts[len(parts)-2]] = ovapipeExpectedFile{
				session, spec.File.Name, spec.File.Checksum.Algorithm, strings.ToLower(spec.File.Checksum.Checksum)}
			ovapipeLibrary.Unlock()
		}
	}
	ovapipeReplay(w, rec)
}

func ovapipeUploadFile(next http.Handler, w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, ovapipeFileDataPrefix)
	id, name, _ := strings.Cut(rest, "/")
	if !ovapipeID.MatchString(id) || name == "" || strings.ContainsAny(name, "/\\") || name == ".." || name == "." {
		ovapipeVAPIError(w, http.StatusNotFound, "com.vmware.vapi.std.errors.not_found", "no such upload endpoint")
		return
	}
	ovapipeLibrary.Lock()
	expected, check := ovapipeLibrary.expected[id]
	ovapipeLibrary.Unlock()
	var sum hash.Hash
	if check {
		sum = ovapipeNewHash(expected.algorithm)
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(r.Body, sum), r.Body}
	}
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	if check && rec.Code == http.StatusOK {
		seen := hex.EncodeToString(sum.Sum(nil))
		if seen != expected.checksum {
			why := fmt.Sprintf("%s: %s of the received bytes is %s, the file spec says %s",
				expected.name, strings.ToUpper(expected.algorithm), seen, expected.checksum)
			log.Printf("content library upload: %s", why)
			ovapipeLibrary.Lock()
			ovapipeLibrary.failed[expected.session] = why
			ovapipeLibrary.Unlock()
			ovapipeVAPIError(w, http.StatusBadRequest, "com.vmware.vapi.std.errors.invalid_argument", why)
			return
		}
		log.Printf("content library upload: %s verified (%s)", expected.name, expected.algorithm)
	}
	ovapipeReplay(w, rec)
}

// ovapipeItemDir is the folder Debian's vAPI simulator keeps an item's files in:
// <datastore folder>/contentlib-<library id>/<item id>.
func ovapipeItemDir(item string) string {
	for _, obj := range Map.All("Datastore") {
		ds, ok := obj.(*Datastore)
		if !ok {
			continue
		}
		found, _ := filepath.Glob(filepath.Join(ds.Info.GetDatastoreInfo().Url, "contentlib-*", item))
		if len(found) == 1 {
			return found[0]
		}
	}
	return ""
}

// ovapipeItemDisks lists, per disk Item in the order of the descriptor's hardware (the order
// CreateImportSpec makes disk-N.vmdk in), the item's file that fills it ("" for a disk
// without a file: it stays blank).
func ovapipeItemDisks(dir string) ([]string, error) {
	descriptors, _ := filepath.Glob(filepath.Join(dir, "*.ovf"))
	if len(descriptors) != 1 {
		return nil, fmt.Errorf("library item folder %s holds %d descriptors", dir, len(descriptors))
	}
	f, err := os.Open(descriptors[0])
	if err != nil {
		return nil, err
	}
	defer f.Close()
	envelope, err := ovf.Unmarshal(f)
	if err != nil {
		return nil, err
	}
	hrefs := map[string]string{}
	for _, file := range envelope.References {
		hrefs[file.ID] = file.Href
	}
	disks := map[string]ovf.VirtualDiskDesc{}
	var inSection []ovf.VirtualDiskDesc
	if envelope.Disk != nil {
		inSection = envelope.Disk.Disks
		for _, disk := range envelope.Disk.Disks {
			disks[disk.DiskID] = disk
		}
	}
	var ordered []ovf.VirtualDiskDesc
	if vs := envelope.VirtualSystem; vs != nil && len(vs.VirtualHardware) > 0 {
		for _, item := range vs.VirtualHardware[0].Item {
			if item.ResourceType == nil || *item.ResourceType != 17 || len(item.HostResource) == 0 {
				continue
			}
			if disk, ok := disks[path.Base(item.HostResource[0])]; ok {
				ordered = append(ordered, disk)
			}
		}
	} else {
		ordered = inSection
	}
	var files []string
	for _, disk := range ordered {
		if disk.FileRef == nil {
			files = append(files, "")
			continue
		}
		href := path.Base(hrefs[*disk.FileRef])
		if href == "." || href == "/" || href == "" {
			return nil, fmt.Errorf("disk %s names file %s, which References does not have", disk.DiskID, *disk.FileRef)
		}
		files = append(files, filepath.Join(dir, href))
	}
	return files, nil
}

func ovapipeDeploy(next http.Handler, w http.ResponseWriter, r *http.Request) {
	item := strings.TrimPrefix(r.URL.Path, ovapipeOVFItemPath)
	body, err := ovapipeReadBody(r)
	if err != nil || !ovapipeID.MatchString(item) {
		next.ServeHTTP(w, r)
		return
	}
	var spec struct {
		Deployment struct {
			Annotation string `json:"annotation"`
		} `json:"deployment_spec"`
	}
	_ = json.Unmarshal(body, &spec)
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	var answer struct {
		Value struct {
			Succeeded bool `json:"succeeded"`
			Resource  *struct {
				Type string `json:"type"`
				ID   string `json:"id"`
			} `json:"resource_id"`
		} `json:"value"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &answer) != nil ||
		!answer.Value.Succeeded || answer.Value.Resource == nil {
		ovapipeReplay(w, rec)
		return
	}
	ref := types.ManagedObjectReference{Type: answer.Value.Resource.Type, Value: answer.Value.Resource.ID}
	vm, ok := Map.Get(ref).(*VirtualMachine)
	if !ok {
		ovapipeReplay(w, rec)
		return
	}
	if err := ovapipeFillDeployed(vm, item, spec.Deployment.Annotation); err != nil {
		log.Printf("deploy of library item %s: %s", item, err)
		ovapipeVAPIError(w, http.StatusInternalServerError, "com.vmware.vapi.std.errors.error",
			fmt.Sprintf("deploying library item %s: %s", item, err))
		return
	}
	ovapipeReplay(w, rec)
}

// ovapipeFillDeployed gives the deployed VM what vCenter's deploy gives it: the
// deployment spec's annotation and the item's disks.
func ovapipeFillDeployed(vm *VirtualMachine, item, annotation string) error {
	dir := ovapipeItemDir(item)
	if dir == "" {
		return fmt.Errorf("no folder holds the item's files")
	}
	sources, err := ovapipeItemDisks(dir)
	if err != nil {
		return err
	}
	var targets []ovapipeDisk
	Map.WithLock(vm, func() {
		if annotation != "" {
			vm.Config.Annotation = annotation
			vm.Summary.Config.Annotation = annotation
		}
		targets = vm.ovapipeDisks()
	})
	if len(targets) != len(sources) {
		return fmt.Errorf("the VM has %d disks, the item's descriptor %d", len(targets), len(sources))
	}
	buf := make([]byte, ovapipeCopyBuffer)
	for i, source := range sources {
		target := targets[i].file
		for _, disk := range targets { // CreateImportSpec names the Nth disk Item disk-N.vmdk
			if strings.HasSuffix(disk.file, fmt.Sprintf("/disk-%d.vmdk", i)) {
				target = disk.file
			}
		}
		if source == "" {
			continue // a disk without a file: blank, as created
		}
		if err := ovapipeCopyFile(source, target, buf); err != nil {
			return err
		}
		log.Printf("deploy of library item %s: %s -> %s", item, filepath.Base(source), target)
	}
	return nil
}

func ovapipeCopyFile(from, to string, buf []byte) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = ovapipeCopyFull(out, in, buf)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// The newer /api spelling of the same endpoints (vSphere 7.0 U2+), translated to Debian's
// /rest handlers: /api/X/ID -> /rest/com/vmware/X/id:ID, ?action= -> ?~action=, the body
// wrapped in the key /rest expects, the answer's "value" unwrapped.
const ovapipeAPIPrefix = "/api/"

type ovapipeAPIRoute struct {
	api, rest  string // path prefixes below /api/ and /rest/com/vmware/
	collection bool   // the path is the collection itself (no id follows)
}

var ovapipeAPIRoutes = []ovapipeAPIRoute{
	{"session", "cis/session", true},
	{"content/library/item/updatesession/file/", "content/library/item/updatesession/file/", false},
	{"content/library/item/update-session/", "content/library/item/update-session/", false},
	{"content/library/item/update-session", "content/library/item/update-session", true},
	{"content/library/item/", "content/library/item/", false},
	{"content/library/item", "content/library/item", true},
	{"content/local-library/", "content/local-library/", false},
	{"content/local-library", "content/local-library", true},
	{"content/library/", "content/library/", false},
	{"content/library", "content/library", true},
	{"vcenter/ovf/library-item/", "vcenter/ovf/library-item/", false},
}

// ovapipeAPIBodyKey: the key /rest wraps a request body in, by method, collection and action.
func ovapipeAPIBodyKey(method string, collection bool, action, route string) string {
	switch {
	case action == "find":
		return "spec"
	case action == "add":
		return "file_spec"
	case method == http.MethodPatch:
		return "update_spec"
	case method == http.MethodPost && collection && action == "" && route != "session":
		return "create_spec"
	}
	return ""
}

func ovapipeTranslateAPI(r *http.Request) (*http.Request, error) {
	rest := strings.TrimPrefix(r.URL.Path, ovapipeAPIPrefix)
	for _, route := range ovapipeAPIRoutes {
		var target string
		if route.collection {
			if rest != route.api {
				continue
			}
			target = route.rest
		} else {
			if !strings.HasPrefix(rest, route.api) {
				continue
			}
			id := strings.TrimPrefix(rest, route.api)
			if id == "" || strings.Contains(id, "/") {
				return nil, fmt.Errorf("no such endpoint")
			}
			target = route.rest + "id:" + id
		}
		query := r.URL.Query()
		action := query.Get("action")
		if action != "" {
			query.Del("action")
			query.Set("~action", action)
		}
		body, err := ovapipeReadBody(r)
		if err != nil {
			return nil, err
		}
		if key := ovapipeAPIBodyKey(r.Method, route.collection, action, route.api); key != "" && len(body) > 0 {
			body = append(append([]byte(`{"`+key+`":`), body...), '}')
		}
		translated := r.Clone(r.Context())
		translated.URL.Path = ovapipeRestPrefix + "/com/vmware/" + target
		translated.URL.RawPath = ""
		translated.URL.RawQuery = query.Encode()
		translated.RequestURI = translated.URL.RequestURI()
		translated.Body = io.NopCloser(bytes.NewReader(body))
		translated.ContentLength = int64(len(body))
		return translated, nil
	}
	return nil, fmt.Errorf("no such endpoint")
}

// ovapipeServeAPI answers /api requests through the /rest handler chain.
func ovapipeServeAPI(rest http.Handler, w http.ResponseWriter, r *http.Request) {
	translated, err := ovapipeTranslateAPI(r)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error_type":"NOT_FOUND","messages":[]}` + "\n"))
		return
	}
	rec := httptest.NewRecorder()
	rest.ServeHTTP(rec, translated)
	for key, values := range rec.Header() {
		if key != "Content-Length" && key != "Set-Cookie" {
			w.Header()[key] = values
		}
	}
	body := rec.Body.Bytes()
	if rec.Code >= 200 && rec.Code < 300 {
		var wrapped struct {
			Value json.RawMessage `json:"value"`
		}
		if len(body) > 0 && json.Unmarshal(body, &wrapped) == nil && wrapped.Value != nil {
			body = append(wrapped.Value, '\n')
			w.Header().Set("Content-Type", "application/json")
		}
		if len(body) == 0 && rec.Code == http.StatusOK {
			w.WriteHeader(http.StatusNoContent)
			return
		}
	} else {
		var vapi struct {
			Type  string `json:"type"`
			Value struct {
				Messages []json.RawMessage `json:"messages"`
			} `json:"value"`
		}
		kind := http.StatusText(rec.Code)
		if json.Unmarshal(body, &vapi) == nil && vapi.Type != "" {
			parts := strings.Split(vapi.Type, ".")
			kind = strings.ToUpper(parts[len(parts)-1])
		}
		messages, _ := json.Marshal(vapi.Value.Messages)
		if vapi.Value.Messages == nil {
			messages = []byte("[]")
		}
		body = []byte(fmt.Sprintf(`{"error_type":%q,"messages":%s}`+"\n", kind, messages))
		w.Header().Set("Content-Type", "application/json")
	}
	code := rec.Code
	if code == http.StatusOK && r.Method == http.MethodPost && r.URL.Path == ovapipeAPIPrefix+"session" {
		code = http.StatusCreated // as vCenter answers a new /api session
	}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
