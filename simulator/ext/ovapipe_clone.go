package simulator

import (
	"bytes"
	"io"
	"log"
	"os"
	"path"
	"regexp"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// Debian's CloneVM_Task hands the source VM's own VirtualDisk objects to the new VM and
// rewrites their backing file names in place, so after a clone the template's disk points at
// the clone's file, and deleting the template deletes the clone's disk. vCenter's full clone
// copies the disks into the clone's folder; a linked clone (diskMoveType
// createNewChildDiskBacking) gets its own delta disk whose parent is the source's disk,
// read-only. ovapipeCloneGuard wraps the call: it notes the source's disk backings before,
// and afterwards gives the source copies naming its own files again (the clone keeps the
// rewritten objects), copies the disk content for a full clone, and sets the parent for a
// linked one.

var ovapipeThisRE = regexp.MustCompile(`<(?:\w+:)?_this[^>]*>([^<]+)</`)

func ovapipeCloneGuard(method string, body []byte) func() {
	if method != "CloneVM_Task" {
		return func() {}
	}
	m := ovapipeThisRE.FindSubmatch(body)
	if m == nil {
		return func() {}
	}
	ref := types.ManagedObjectReference{Type: "VirtualMachine", Value: strings.TrimSpace(string(m[1]))}
	vm, ok := Map.Get(ref).(*VirtualMachine)
	if !ok || vm.Config == nil {
		return func() {}
	}
	linked := bytes.Contains(body, []byte("createNewChildDiskBacking"))
	saved := map[int32]types.VirtualDiskFlatVer2BackingInfo{}
	shared := map[int32]*types.VirtualDisk{}
	for _, d := range vm.Config.Hardware.Device {
		disk, ok := d.(*types.VirtualDisk)
		if !ok {
			continue
		}
		if b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo); ok {
			saved[disk.Key] = *b
			shared[disk.Key] = disk
		}
	}
	dc := Map.getEntityDatacenter(vm)
	return func() {
		for i, d := range vm.Config.Hardware.Device {
			disk, ok := d.(*types.VirtualDisk)
			if !ok {
				continue
			}
			original, ok := saved[disk.Key]
			if !ok {
				continue
			}
			own := *disk
			backing := original
			own.Backing = &backing
			vm.Config.Hardware.Device[i] = &own
			clone := shared[disk.Key]
			cb, ok := clone.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok || cb.FileName == original.FileName {
				continue // the clone failed before it got a disk of its own
			}
			if linked {
				parent := original
				parent.Parent = nil
				cb.Parent = &parent
				continue
			}
			ovapipeCopyDatastoreFile(dc, original.FileName, cb.FileName)
		}
	}
}

// ovapipeCopyDatastoreFile copies a full clone's disk content from the source's file.
func ovapipeCopyDatastoreFile(dc *Datacenter, from, to string) {
	fm := Map.FileManager()
	src, fault := fm.resolve(&dc.Self, from)
	if fault != nil {
		return
	}
	dst, fault := fm.resolve(&dc.Self, to)
	if fault != nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		return
	}
	defer in.Close()
	if err := os.MkdirAll(path.Dir(dst), 0o755); err != nil {
		return
	}
	out, err := os.Create(dst)
	if err != nil {
		return
	}
	if _, err := io.Copy(out, in); err != nil {
		log.Printf("clone: copying %s to %s: %s", from, to, err)
	}
	_ = out.Close()
}
