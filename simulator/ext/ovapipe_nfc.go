package simulator

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

const ovapipeCopyBuffer = 1 << 20

// ovapipeNFCHandler serves lease transfers itself: uploads (PUT, POST streamVmdk) are
// streamed into the datastore file, downloads support Content-Length and ranges. Every
// other path goes to Debian's handlers.
func ovapipeNFCHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == Map.Path {
			ovapipeLogSOAP(next, w, r)
			return
		}
		if !strings.HasPrefix(r.URL.Path, nfcPrefix) {
			next.ServeHTTP(w, r)
			return
		}
		file, ok := ovapipeLeaseFile(r.URL.Path)
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case http.MethodPut, http.MethodPost:
			if expired := ovapipeLeaseExpired(r.URL.Path); expired != nil {
				r.Body = io.NopCloser(&ovapipeLeaseReader{body: r.Body, expired: expired})
			}
			ovapipeReceive(w, r, file)
		case http.MethodGet, http.MethodHead:
			ovapipeSend(w, r, file)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	})
}

// ovapipeSOAPLimit bounds the SOAP request bodies read for the call log.
const ovapipeSOAPLimit = 64 << 20

type ovapipeStatusWriter struct {
	http.ResponseWriter
	status int
}

func (w *ovapipeStatusWriter) WriteHeader(status int) {
	w.status = status
	w.ResponseWriter.WriteHeader(status)
}

// ovapipeSOAPMethod is the first element inside the SOAP Body: the method called.
func ovapipeSOAPMethod(body []byte) string {
	i := bytes.Index(body, []byte("Body"))
	if i < 0 {
		return "?"
	}
	rest := body[i:]
	start := bytes.IndexByte(rest, '<')
	if start < 0 {
		return "?"
	}
	rest = rest[start+1:]
	end := bytes.IndexAny(rest, " >/")
	if end < 0 {
		return "?"
	}
	name := string(rest[:end])
	if colon := strings.LastIndexByte(name, ':'); colon >= 0 {
		name = name[colon+1:]
	}
	return name
}

// ovapipeLogSOAP logs one line per SOAP call (method, status, duration), so a failing
// test's simulator log says what the client asked for.
func ovapipeLogSOAP(next http.Handler, w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, ovapipeSOAPLimit))
	_ = r.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	started := time.Now()
	sw := &ovapipeStatusWriter{ResponseWriter: w, status: http.StatusOK}
	method := ovapipeSOAPMethod(body)
	if fault := ovapipeUnsupportedVMX(method, body); fault != nil {
		log.Printf("soap %s: refused: %s", method, fault.String)
		ovapipeWriteFault(sw, fault)
		return
	}
	if fault := ovapipeLeaseCall(method, body); fault != nil {
		log.Printf("soap %s: refused: %s", method, fault.String)
		ovapipeWriteFault(sw, fault)
		return
	}
	if ovapipeServeFieldCall(sw, r, method, body) {
		log.Printf("soap %s: answered by ovapipe (one value per key) in %s", method, time.Since(started).Round(time.Microsecond))
		return
	}
	cloned := ovapipeCloneGuard(method, body)
	if method == "ImportVApp" {
		buffered := &ovapipeBufferedWriter{header: http.Header{}, status: http.StatusOK}
		next.ServeHTTP(buffered, r)
		ovapipeWatchNewLeases()
		buffered.flushTo(sw)
	} else {
		next.ServeHTTP(sw, r)
	}
	cloned()
	outcome := "ok"
	if sw.status != http.StatusOK {
		outcome = fmt.Sprintf("fault (HTTP %d)", sw.status)
	}
	log.Printf("soap %s: %s in %s", method, outcome, time.Since(started).Round(time.Microsecond))
}

func ovapipeLeaseFile(urlPath string) (string, bool) {
	p := strings.Split(urlPath, "/")
	if len(p) < 2 {
		return "", false
	}
	id, name := p[len(p)-2], p[len(p)-1]
	l, ok := nfcLease.Load(types.ManagedObjectReference{Type: "HttpNfcLease", Value: id})
	if !ok {
		log.Printf("invalid NFC lease: %s", id)
		return "", false
	}
	file, ok := l.(*HttpNfcLease).files[name]
	if !ok {
		log.Printf("invalid NFC device id: %s", name)
	}
	return file, ok
}

func ovapipeReceive(w http.ResponseWriter, r *http.Request, file string) {
	defer r.Body.Close()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	n, err := ovapipeCopyFull(f, r.Body, make([]byte, ovapipeCopyBuffer))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		log.Printf("nfc %s %s: failed after %d bytes: %s", r.Method, file, n, err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	log.Printf("nfc %s %s: stored %d bytes", r.Method, file, n)
	w.WriteHeader(http.StatusOK)
}

// ovapipeCopyFull copies src to dst in writes of len(buf) bytes. io.CopyBuffer would not:
// *os.File implements ReaderFrom, whose generic path copies through 32 KiB, and a TLS body
// returns one 16 KiB record per Read, so each record would become its own write(2).
func ovapipeCopyFull(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var written int64
	for {
		filled := 0
		var rerr error
		for filled < len(buf) && rerr == nil {
			var n int
			n, rerr = src.Read(buf[filled:])
			filled += n
		}
		if filled > 0 {
			m, werr := dst.Write(buf[:filled])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
	}
}

func ovapipeSend(w http.ResponseWriter, r *http.Request, file string) {
	f, err := os.Open(file)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	stat, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", stat.ModTime(), f)
	log.Printf("nfc %s %s: served %d bytes", r.Method, file, stat.Size())
}

// ovapipeDiskFiles lists a VM's virtual disks with their files on the local datastore.
type ovapipeDisk struct {
	device types.BaseVirtualDevice
	file   string
}

func (vm *VirtualMachine) ovapipeDisks() []ovapipeDisk {
	var disks []ovapipeDisk
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		info, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo)
		if !ok {
			continue
		}
		var p object.DatastorePath
		if !p.FromString(info.GetVirtualDeviceFileBackingInfo().FileName) {
			continue
		}
		ds := vm.findDatastore(p.Datastore)
		if ds == nil {
			continue
		}
		disks = append(disks, ovapipeDisk{d, path.Join(ds.Info.GetDatastoreInfo().Url, p.Path)})
	}
	return disks
}

// ExportVm answers a lease whose device URLs serve the VM's disk files (Debian's
// simulator 0.24 has no ExportVm).
func (vm *VirtualMachine) ExportVm(ctx *Context, req *types.ExportVm) soap.HasFault {
	body := new(methods.ExportVmBody)
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOff {
		body.Fault_ = Fault("", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOff,
			ExistingState:  vm.Runtime.PowerState,
		})
		return body
	}
	lease := NewHttpNfcLease(ctx, vm.Self)
	ref := lease.Reference()
	lease.Info.Lease = ref // pyVmomi cannot decode lease.info without it
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	var capacityKB int64
	for i, disk := range vm.ovapipeDisks() {
		name := fmt.Sprintf("disk-%d.vmdk", i)
		vd := disk.device.(*types.VirtualDisk)
		if err := ovapipeFillBlankDisk(disk.file, vd.CapacityInKB); err != nil {
			log.Printf("export %s: %s", disk.file, err)
		}
		lease.files[name] = disk.file
		var size int64
		if stat, err := os.Stat(disk.file); err == nil {
			size = stat.Size()
		}
		capacityKB += vd.CapacityInKB
		lease.Info.DeviceUrl = append(lease.Info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key: vm.ovapipeDiskKey(devices, vd),
			Url: (&url.URL{
				Scheme: "https",
				Host:   "*",
				Path:   nfcPrefix + path.Join(ref.Value, name),
			}).String(),
			Disk:     types.NewBool(true),
			TargetId: name,
			FileSize: size,
		})
	}
	lease.Info.TotalDiskCapacityInKB = capacityKB
	ovapipeWatchLease(lease)
	body.Res = &types.ExportVmResponse{Returnval: ref}
	return body
}
